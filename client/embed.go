// Package client holds Rocket's JavaScript client, embedded so that servers can serve it.
package client

import "embed"

// Files holds rocket.js and rocket.d.ts.
//
//go:embed rocket.js rocket.d.ts
var Files embed.FS
