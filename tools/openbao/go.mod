// Builds OpenBao (the open-source fork of HashiCorp Vault, same HTTP API) for
// the integration tests of the Vault KV v2 secrets backend. A module of its
// own so that its large dependency graph stays out of tools/go.mod.
//
// OpenBao tags its releases v2.x without a /v2 module path, so the Go module
// proxy serves them only as pseudo-versions: this one is the v2.4.0 tag's
// commit. go.sum is OpenBao's own for that commit. Do not run `go mod tidy`
// here: it also resolves OpenBao's test-only dependencies, some of which the
// proxy does not serve; `go build` needs only what is pinned here.
module spreadpilot/tools/openbao

go 1.24.6

require github.com/openbao/openbao v0.0.0-20250828202315-f9407a27fbee
