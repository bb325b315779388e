package intake

import (
	"crypto/sha256"
	"strings"

	"github.com/gin-gonic/gin"
)

const tenantCtxKey = "tenant"

// authenticate resolves the bearer API key to its tenant, or answers 401.
func (s *Service) authenticate(c *gin.Context) {
	token, ok := bearerToken(c.GetHeader("Authorization"))
	tenant, known := s.tenantOfKey(token)
	if !ok || !known {
		s.respondError(c, unauthorized())
		return
	}
	c.Set(tenantCtxKey, tenant)
	c.Next()
}

// tenantOfKey returns the tenant whose API key token is: one given at start
// or one issued through the admin API.
func (s *Service) tenantOfKey(token string) (string, bool) {
	if tenant, known := s.keys[sha256.Sum256([]byte(token))]; known {
		return tenant, true
	}
	return s.apiKeys.Authenticate(token)
}

func tenantOf(c *gin.Context) string { return c.GetString(tenantCtxKey) }

// bearerToken returns the token of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110, section 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
