package auth

import (
	"sync"
	"time"
)

// maxCachedUsers bounds the user-existence cache; past it, expired entries
// are dropped, and if that is not enough the cache starts over.
const maxCachedUsers = 100_000

// userCache remembers users known to exist for at most ttl. Only positive
// answers are cached, never store errors.
type userCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	expires map[string]time.Time
}

func newUserCache(ttl time.Duration, now func() time.Time) *userCache {
	return &userCache{ttl: ttl, now: now, expires: make(map[string]time.Time)}
}

func (c *userCache) fresh(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.expires[id]
	if !ok {
		return false
	}
	if !c.now().Before(exp) {
		delete(c.expires, id)
		return false
	}
	return true
}

func (c *userCache) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.expires) >= maxCachedUsers {
		for k, exp := range c.expires {
			if !now.Before(exp) {
				delete(c.expires, k)
			}
		}
		if len(c.expires) >= maxCachedUsers {
			clear(c.expires)
		}
	}
	c.expires[id] = now.Add(c.ttl)
}
