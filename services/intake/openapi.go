package intake

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPI is the OpenAPI 3.1 description of the HTTP API, served at
// GET /openapi.json without authentication. TestOpenAPIDescribesEveryRoute
// keeps its paths and methods those of routes().
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", openAPI)
}
