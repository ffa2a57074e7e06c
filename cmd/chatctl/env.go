package main

import (
	"errors"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// loadDatabase reads DATABASE_URL, the DB_* settings and ATLAS_DEV_URL with
// the same loaders as the services, so a value means the same to both.
func loadDatabase(getenv config.Getenv) (pgdb.Config, string, error) {
	r := config.NewReader(getenv)
	db := config.Database(r)
	dev := config.AtlasDevURL(r)
	return db, dev, r.Err()
}

// loadSigner reads the auth settings exactly as the API does (trimmed,
// validated: BETTER_AUTH_SECRET of at least 32 bytes, JWT_ISSUER,
// JWT_AUDIENCE), so a token chatctl mints is one the API accepts.
func loadSigner(getenv config.Getenv) (auth.Config, error) {
	r := config.NewReader(getenv)
	cfg := config.Auth(r)
	if cfg.Secret == "" {
		return cfg, errors.New("BETTER_AUTH_SECRET is not set: tokens are signed with it")
	}
	return cfg, r.Err()
}

// loadBus reads the NATS settings with the services' loader (config.NATS:
// NATS_URL, NATS_PREFIX, …), so chatctl publishes where the workers pull.
// An unset NATS_URL is no error: runs requeue then leaves the publish to
// the workers' relay.
func loadBus(getenv config.Getenv) (bus.Config, error) {
	r := config.NewReader(getenv)
	cfg := config.NATS(r)
	return cfg, r.Err()
}
