package intake

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/shared/signing"
)

// secretResponse shows the current signing secret and, during a rotation,
// until when the previous ones keep signing.
type secretResponse struct {
	Secret    string           `json:"secret"`
	CreatedAt time.Time        `json:"created_at"`
	Previous  []signing.Secret `json:"previous,omitempty"`
}

func newSecretResponse(ring signing.Keyring, now time.Time) secretResponse {
	cur := ring.Current()
	return secretResponse{Secret: cur.Secret, CreatedAt: cur.CreatedAt, Previous: ring.Previous(now)}
}

func (s *Service) getSigningSecret(c *gin.Context) {
	ring, err := s.secrets.Get(c.Request.Context(), tenantOf(c))
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, newSecretResponse(ring, s.now()))
}

func (s *Service) rotateSigningSecret(c *gin.Context) {
	rot, err := s.readRotate(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	ring, err := s.secrets.Rotate(c.Request.Context(), tenantOf(c), rot.grace, rot.secret)
	if err != nil {
		s.respondError(c, secretError(err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, newSecretResponse(ring, s.now()))
}
