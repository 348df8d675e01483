// Package e2e holds Rocket's browser tests: they build cmd/rocket, start
// real server processes (and, for the cluster test, a redis-server) on
// loopback ports, and drive the demo chat page and rocket.js in headless
// Chromium with Node.js's test runner and playwright-core (*.test.mjs).
//
// They run with the rest of the suite, `go test -race -count=1 ./...`, and
// need node and npm (Node.js 20 or newer), /usr/bin/chromium and
// redis-server: on Debian, apt-get install chromium nodejs npm redis-server.
// The npm packages (playwright-core, pinned in package-lock.json) are
// installed by the tests with `npm ci` when e2e/node_modules is missing.
//
// Screenshots go to $ROCKET_E2E_ARTIFACTS, or to rocket-e2e in the
// system's temporary directory.
package e2e
