// Package azkeysv10 tests Coffer's vault with the azkeys SDK pinned at v1.0.x (api-version
// 7.4). It starts the real server as its own process, built from ../.. (the main module
// requires azkeys v1.5.0, and minimal version selection would lift this module to it if it
// imported the main module).
package azkeysv10
