// Package cosignv2 signs images in a running Coffer with cosign v2's own signing packages
// (cmd/cosign/cli/sign, pkg/cosign) and checks that Coffer's signature policy verifies what
// they wrote: the legacy sha256-<hex>.sig tag, the OCI 1.1 referrer and the Sigstore bundle
// v0.3. cosign's verify package (cmd/cosign/cli/verify) checks the same images against
// Coffer. It starts the real server as its own process, built from ../..: cosign's
// dependency tree and the main module's do not fit in one module, so this module does not
// import the main one.
package cosignv2
