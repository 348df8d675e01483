//go:build race

package e2e

// raceEnabled: the tests run with -race, so the server under test is built
// with it too, and a race it reports fails the test.
const raceEnabled = true
