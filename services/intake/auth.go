package intake

import (
	"crypto/sha256"
	"strings"

	"github.com/gin-gonic/gin"
)

const tenantCtxKey = "tenant"

// authenticate resolves the bearer API key to its tenant, or answers 401.
func (s *Service) authenticate(c *gin.Context) {
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	tenant, known := s.keys[sha256.Sum256([]byte(token))]
	if !known {
		tenant, known = s.apiKeys.Authenticate(token)
	}
	if !ok || !known {
		s.respondError(c, unauthorized())
		return
	}
	c.Set(tenantCtxKey, tenant)
	c.Next()
}

func tenantOf(c *gin.Context) string { return c.GetString(tenantCtxKey) }
