package intake

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// tenant is a tenant's record, "<tenant>.info" in the tenants bucket.
type tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func tenantKey(id string) string { return id + ".info" }

// tombstone is what contract.TenantDeletedKey holds.
type tombstone struct {
	DeletedAt time.Time `json:"deleted_at"`
}

// authenticateAdmin lets requests with the admin token through; with no
// token configured the admin API is off.
func (s *Service) authenticateAdmin(c *gin.Context) {
	if s.cfg.AdminToken == "" {
		writeProblem(c, http.StatusForbidden, "admin-disabled", "the admin API is off: set HOOKSTREAM_ADMIN_TOKEN")
		return
	}
	token, _ := bearerToken(c.GetHeader("Authorization"))
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) != 1 {
		if _, tenantKey := s.tenantOfKey(token); tenantKey {
			writeProblem(c, http.StatusForbidden, "forbidden", "this is a tenant's API key; the admin API takes the admin token (HOOKSTREAM_ADMIN_TOKEN)")
			return
		}
		s.respondError(c, &apiError{status: http.StatusUnauthorized, slug: "unauthorized", detail: "send Authorization: Bearer <admin token> (HOOKSTREAM_ADMIN_TOKEN)"})
		return
	}
	c.Next()
}

// registerBootstrapTenants records the tenants of configured API keys, so
// that the admin API lists them and can issue them more keys. A configured
// tenant deleted through the admin API before is the operator's choice
// again: its tombstone goes.
func (s *Service) registerBootstrapTenants(ctx context.Context) error {
	for _, k := range s.cfg.APIKeys {
		if _, err := s.tenants.Get(ctx, contract.TenantDeletedKey(k.Tenant)); err == nil {
			if err := s.tenants.Purge(ctx, contract.TenantDeletedKey(k.Tenant)); err != nil {
				return fmt.Errorf("register tenant %s: %w", k.Tenant, err)
			}
		}
		if _, err := s.putTenant(ctx, tenant{ID: k.Tenant, CreatedAt: s.now().UTC()}); err != nil && !errors.Is(err, errTenantExists) {
			return fmt.Errorf("register tenant %s: %w", k.Tenant, err)
		}
	}
	return nil
}

var errTenantExists = errors.New("tenant exists")

func (s *Service) putTenant(ctx context.Context, t tenant) (tenant, error) {
	data, _ := json.Marshal(t)
	_, err := s.tenants.Create(ctx, tenantKey(t.ID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return t, errTenantExists
	}
	return t, err
}

func (s *Service) loadTenant(ctx context.Context, id string) (tenant, error) {
	if !contract.ValidTenant(id) {
		return tenant{}, notFound("tenant")
	}
	entry, err := s.tenants.Get(ctx, tenantKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return tenant{}, notFound("tenant")
	}
	if err != nil {
		return tenant{}, err
	}
	var t tenant
	if err := json.Unmarshal(entry.Value(), &t); err != nil {
		return tenant{}, fmt.Errorf("decode tenant %s: %w", id, err)
	}
	return t, nil
}

func (s *Service) createTenant(c *gin.Context) {
	var body struct { // a tenant's fields that a client gives
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := readJSON(c, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth, &body); err != nil {
		s.respondError(c, err)
		return
	}
	req := tenant{ID: body.ID, Name: body.Name}
	if !contract.ValidTenant(req.ID) || len(req.Name) > 256 {
		s.respondError(c, invalid(`field "id" is required: 1-64 of a-z A-Z 0-9 - _; "name" at most 256 bytes`))
		return
	}
	if err := s.checkNotDeleted(c.Request.Context(), req.ID); err != nil {
		s.respondError(c, err)
		return
	}
	req.CreatedAt = s.now().UTC()
	t, err := s.putTenant(c.Request.Context(), req)
	if errors.Is(err, errTenantExists) {
		s.respondError(c, conflict(fmt.Sprintf("tenant %q exists", req.ID)))
		return
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Header("Location", "/v1/admin/tenants/"+t.ID)
	c.JSON(http.StatusCreated, t)
}

func (s *Service) listTenants(c *gin.Context) {
	out := []tenant{}
	err := bus.ReadAll(c.Request.Context(), s.tenants, "*.info", func(e jetstream.KeyValueEntry) error {
		var t tenant
		if err := json.Unmarshal(e.Value(), &t); err == nil {
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

func (s *Service) getTenant(c *gin.Context) {
	t, err := s.loadTenant(c.Request.Context(), c.Param("tenant"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, t)
}

// checkNotDeleted refuses the id of a deleted tenant: its jobs and delivery
// logs are kept for their retention, and written for as long as its jobs'
// callbacks are retried, and a tenant of that id would see them. It is
// never given again.
func (s *Service) checkNotDeleted(ctx context.Context, id string) error {
	entry, err := s.tenants.Get(ctx, contract.TenantDeletedKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var t tombstone
	if err := json.Unmarshal(entry.Value(), &t); err != nil {
		return fmt.Errorf("decode %s: %w", contract.TenantDeletedKey(id), err)
	}
	return conflict(fmt.Sprintf("tenant %q was deleted at %s; a tenant of that id would see what is left of its jobs and delivery logs: use another id",
		id, t.DeletedAt.Format(time.RFC3339)))
}

// deleteTenant writes the tenant's tombstone, then revokes its issued keys,
// endpoints and signing secret, forgets its event types and tasks, and
// removes it. Its jobs and delivery logs expire as usual; its id is not
// given again (checkNotDeleted). A key or an endpoint made while it is
// being deleted finds the tombstone and is removed again (unlessDeleted). A
// tenant with a key in HOOKSTREAM_API_KEYS is not deleted: that key would
// go on taking its jobs.
func (s *Service) deleteTenant(c *gin.Context) {
	ctx := c.Request.Context()
	t, err := s.loadTenant(ctx, c.Param("tenant"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	for _, k := range s.cfg.APIKeys {
		if k.Tenant == t.ID { // its configured key would go on taking work whose callbacks are not sent
			s.respondError(c, conflict(fmt.Sprintf("tenant %q has a key given at start (HOOKSTREAM_API_KEYS, or serve's development key when that is empty): remove it there first, or set HOOKSTREAM_API_KEYS", t.ID)))
			return
		}
	}
	data, _ := json.Marshal(tombstone{DeletedAt: s.now().UTC()})
	if _, err := s.tenants.Put(ctx, contract.TenantDeletedKey(t.ID), data); err != nil {
		s.respondError(c, err)
		return
	}
	keys, err := s.apiKeys.List(ctx, t.ID)
	if err != nil {
		s.respondError(c, err)
		return
	}
	for _, k := range keys {
		if err := s.apiKeys.Revoke(ctx, t.ID, k.ID); err != nil {
			s.respondError(c, err)
			return
		}
	}
	eps, err := s.endpoints.List(ctx, t.ID)
	if err != nil {
		s.respondError(c, err)
		return
	}
	for _, ep := range eps {
		if err := s.endpoints.Delete(ctx, t.ID, ep.ID); err != nil {
			s.respondError(c, err)
			return
		}
	}
	var kept []string
	for _, filter := range []string{t.ID + ".eventtypes.>", t.ID + ".tasks.>", contract.EndpointKeyKey(t.ID, ">")} {
		err := bus.ReadAll(ctx, s.tenants, filter, func(e jetstream.KeyValueEntry) error {
			kept = append(kept, e.Key())
			return nil
		})
		if err != nil {
			s.respondError(c, err)
			return
		}
	}
	for _, key := range append(kept, t.ID+".signing") {
		if err := s.tenants.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.respondError(c, err)
			return
		}
	}
	if err := s.tenants.Purge(ctx, tenantKey(t.ID)); err != nil {
		s.respondError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Service) issueKey(c *gin.Context) {
	ctx := c.Request.Context()
	t, err := s.loadTenant(ctx, c.Param("tenant"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	rec, key, err := s.apiKeys.Issue(ctx, t.ID, s.now())
	if err == nil {
		err = s.unlessDeleted(ctx, t.ID, func(ctx context.Context) error { return s.apiKeys.Revoke(ctx, t.ID, rec.ID) })
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, gin.H{"id": rec.ID, "tenant": rec.Tenant, "key": key, "created_at": rec.CreatedAt})
}

// unlessDeleted checks, once a key or an endpoint was made for tenant, that
// the tenant is not being deleted (deleteTenant writes its tombstone first
// and then lists what to remove, which may miss it): if it is, or if that
// cannot be read, undo removes what was made, and the request fails (409,
// or 503).
func (s *Service) unlessDeleted(ctx context.Context, tenant string, undo func(context.Context) error) error {
	_, err := s.tenants.Get(ctx, contract.TenantDeletedKey(tenant))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err == nil:
		err = conflict(fmt.Sprintf("tenant %q is being deleted", tenant))
	}
	// Undone even if the client has gone meanwhile.
	undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if undoErr := undo(undoCtx); undoErr != nil {
		s.logger.Warn("remove what was made for a tenant being deleted", "tenant_id", tenant, "error", undoErr)
		return undoErr
	}
	return err
}

func (s *Service) listKeys(c *gin.Context) {
	ctx := c.Request.Context()
	t, err := s.loadTenant(ctx, c.Param("tenant"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	keys, err := s.apiKeys.List(ctx, t.ID)
	if err != nil {
		s.respondError(c, err)
		return
	}
	out := make([]gin.H, len(keys))
	for i, k := range keys {
		out[i] = gin.H{"id": k.ID, "tenant": k.Tenant, "created_at": k.CreatedAt}
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

func (s *Service) revokeKey(c *gin.Context) {
	if err := s.apiKeys.Revoke(c.Request.Context(), c.Param("tenant"), c.Param("key")); err != nil {
		s.respondError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
