// Package architecture holds the test that keeps the design map's arrows (DESIGN.md,
// "Seams"; docs/architecture.md):
//
//	cli → server → {registry, trust, signatures, vault api, kmsplugin, imagecrypt, console}
//	    → {seal, kek, access, identity, audit} → {store, blobstore}
//
// It asks the go command for every package of the module and its imports, puts each
// package in one class of the table below, and fails on every import that a class may not
// make, naming the importer, the imported package and the rule. A package that is in no
// class fails too: a new package must be placed on the map before it can be built on.
package architecture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const module = "github.com/cofferhq/coffer"

// class is a package's place on the map.
type class string

const (
	// util: small building blocks with no Coffer concept (durable file writes). Anyone may
	// import them; they import nothing of the module.
	util class = "util"
	// foundation: where bytes and rows are kept (store, blobstore and its drivers). They
	// import no other part.
	foundation class = "foundation"
	// core: the services every part shares (seal, kek, access, identity, audit, tokens,
	// vault key formats). They import foundation and each other, never a feature, a
	// handler, server or cli. They may import wire: the management contract holds grammars
	// that the server must apply exactly as the CLI and the console check them (the scope
	// syntax, which access applies to every scope it is given), and one implementation
	// cannot drift from itself; wire imports nothing of the module but util, so no cycle
	// can arise.
	core class = "core"
	// feature: the services of a part that users see (the registry, the vault, the coming
	// trust, KMS plugin, image encryption and console services) and the adapters that sit
	// on them (the in-process KEK driver sits on the vault service). They import core and
	// foundation, never a handler, server or cli.
	feature class = "feature"
	// handler: HTTP and management APIs (every …api package and mgmt). They import the
	// services and the wire types, never server or cli.
	handler class = "handler"
	// wire: the management API's wire types and the grammars of its strings (scopes,
	// scope maps), shared by core services, handlers, the CLI and the console. They import
	// nothing of the module but util.
	wire class = "wire"
	// setup: settings and TLS material that server and cli prepare (config, tlsca).
	setup class = "setup"
	// server: the wiring. It may import every service and handler, never cli.
	server class = "server"
	// cli: the command line. It speaks to a server through the wire types (cliAllowed).
	cli class = "cli"
	// entry: cmd/coffer, which only runs the CLI.
	entry class = "entry"
	// helper: test helpers and harnesses (servertest, bench, shared suites, fakes). Only
	// tests and other helpers use them; they may start a whole server.
	helper class = "helper"
)

// classes places every package of the module (paths relative to the module).
var classes = map[string]class{
	"internal/durable":    util,
	"internal/httpstatus": util,

	"internal/store":                foundation,
	"internal/blobstore":            foundation,
	"internal/blobstore/filesystem": foundation,
	"internal/blobstore/s3":         foundation,

	"internal/access":       core,
	"internal/audit":        core,
	"internal/authn":        core,
	"internal/identity":     core,
	"internal/kek":          core,
	"internal/kek/rest":     core,
	"internal/seal":         core,
	"internal/seal/keyring": core,
	"internal/token":        core,
	"internal/vault/keys":   core,
	"internal/vault/hsm":    core, // the PKCS#11 backend of -HSM keys (the server wires it into the vault)

	"internal/registry":    feature,
	"internal/vault":       feature,
	"internal/kek/inproc":  feature,
	"internal/kek/resolve": feature,
	"internal/encryption":  feature,
	// imagecrypt and its key provider run on the client (the CLI, a node); they reach
	// vaults over REST through kek/resolve.
	"internal/imagecrypt":             feature,
	"internal/imagecrypt/keyprovider": feature,
	"internal/trust":                  feature,
	"internal/signatures":             feature,
	"internal/kms":                    feature,
	// The KMS v2 plugin and the reencrypt client: client-side code that `coffer kms-plugin`
	// and `coffer kms reencrypt` run (see cliAllowed).
	"internal/kmsplugin":           feature,
	"internal/kmsplugin/reencrypt": feature,

	"internal/access/accessapi":         handler,
	"internal/console":                  handler,
	"internal/identity/identityapi":     handler,
	"internal/mgmt":                     handler,
	"internal/registry/api":             handler,
	"internal/registry/registryauth":    handler,
	"internal/encryption/encryptionapi": handler,
	"internal/trust/trustapi":           handler,
	"internal/signatures/signaturesapi": handler,
	"internal/kms/kmsapi":               handler,
	"internal/token/tokenapi":           handler,
	"internal/vault/api":                handler,

	"internal/mgmt/wire": wire,

	"internal/config": setup,
	"internal/tlsca":  setup,

	"internal/server": server,
	"internal/cli":    cli,
	"cmd/coffer":      entry,

	"bench/registry":                helper,
	"internal/architecture":         helper,
	"internal/blobstore/drivertest": helper,
	"internal/blobstore/s3/s3test":  helper,
	"internal/clocktest":            helper,
	"internal/mgmt/wire/wiretest":   helper,
	"internal/kek/kektest":          helper,
	"internal/registry/conformance": helper,
	"internal/servertest":           helper,
	"internal/servertest/replicas":  helper,
	"internal/store/storetest":      helper,
	"internal/vault/vaulttest":      helper,
	"internal/vault/hsm/hsmtest":    helper,

	// Issue 15 (metadata on PostgreSQL): the real server and the shared Metadata suite.
	"internal/store/pgtest":          helper,
	"internal/registry/metadatatest": helper,
}

// mayImport lists, for each class, the classes its packages may import (besides
// packages of their own class, which every class but cli and entry may import).
var mayImport = map[class][]class{
	util:       nil,
	foundation: {util},
	core:       {util, foundation, wire},
	feature:    {util, foundation, core},
	handler:    {util, foundation, core, feature, wire},
	wire:       {util},
	setup:      {util},
	server:     {util, foundation, core, feature, handler, wire, setup},
	cli:        nil, // cliAllowed
	entry:      {cli},
	helper:     {util, foundation, core, feature, handler, wire, setup, server},
}

// cliAllowed is everything the CLI may import: it reaches the server only over the
// management API, decoding the shared wire types, and starts a server only for `serve`
// (cliServerFiles).
var cliAllowed = []string{
	"internal/config",
	"internal/durable",
	// Client-side image encryption and the ocicrypt key provider: `coffer image …` and
	// `coffer keyprovider` run them in the CLI's process.
	"internal/imagecrypt",
	"internal/imagecrypt/keyprovider",
	// Client-side code the CLI runs on a node: the KMS v2 plugin (coffer kms-plugin, which
	// reaches keys through kek/resolve's remote-only resolver, and through the Coffer server
	// with a kek.KEK of the CLI's own over the management API) and the Kubernetes client of
	// coffer kms reencrypt. None is a server part: all talk to a Coffer server only over its
	// APIs.
	"internal/kek",
	"internal/kek/resolve",
	"internal/kmsplugin",
	"internal/kmsplugin/reencrypt",
	"internal/mgmt/wire",
	"internal/server",
	"internal/tlsca",
}

// cliServerFiles are the CLI's only files that may import internal/server.
var cliServerFiles = []string{"serve.go", "migrate.go"}

// pkg is what the test needs of `go list -json`.
type pkg struct {
	ImportPath   string
	Name         string
	Dir          string
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

type violation struct {
	from, to, rule string
}

func (v violation) String() string { return v.from + " → " + v.to + ": " + v.rule }

func TestArchitecture(t *testing.T) {
	pkgs := listPackages(t)

	var unplaced []string
	for _, p := range pkgs {
		if _, ok := classes[p.rel]; !ok {
			unplaced = append(unplaced, p.rel)
		}
	}
	for _, rel := range unplaced {
		t.Errorf("%s is in no class: add it to the table in internal/architecture/architecture_test.go (which layer of the map does it belong to?)", rel)
	}
	present := map[string]bool{}
	for _, p := range pkgs {
		present[p.rel] = true
	}
	for rel := range classes {
		if !present[rel] {
			t.Logf("note: %s is in the table but not in the module (yet)", rel)
		}
	}

	var vs []violation
	for _, p := range pkgs {
		vs = append(vs, check(p)...)
	}
	slices.SortFunc(vs, func(a, b violation) int { return strings.Compare(a.String(), b.String()) })
	vs = slices.Compact(vs)
	if len(vs) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%d imports break the design map (importer → imported: rule):\n", len(vs))
		for _, v := range vs {
			fmt.Fprintf(&b, "\t%s\n", v)
		}
		t.Error(b.String())
	}
}

// listed is a package of the module, with its imports of the module (paths relative to it).
type listed struct {
	rel         string
	name        string
	dir         string
	goFiles     []string
	imports     []string
	testImports []string
}

// listPackages runs `go list -json` on the whole module. It needs no network (GOPROXY=off):
// the go command reads the module's files and the module cache that building the test
// already filled.
func listPackages(t *testing.T) []listed {
	t.Helper()
	// go test puts the go command that runs it first on PATH.
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json", module+"/...")
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json %s/...: %v\n%s", module, err, stderr.String())
	}
	t.Logf("go list took %s", time.Since(start).Round(time.Millisecond))
	var res []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		rel, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		l := listed{rel: rel, name: p.Name, dir: p.Dir, goFiles: p.GoFiles}
		for _, i := range p.Imports {
			if r, ok := relative(i); ok {
				l.imports = append(l.imports, r)
			}
		}
		for _, i := range slices.Concat(p.TestImports, p.XTestImports) {
			if r, ok := relative(i); ok && r != rel {
				l.testImports = append(l.testImports, r)
			}
		}
		res = append(res, l)
	}
	if len(res) == 0 {
		t.Fatal("go list found no package of the module")
	}
	return res
}

func relative(importPath string) (string, bool) {
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

// isAPI tells whether a package is an API package by its name: its name ends in "api"
// (accessapi, tokenapi, encryptionapi, …) or its directory is …/api.
func isAPI(rel, name string) bool {
	return strings.HasSuffix(name, "api") || path.Base(rel) == "api"
}

// check returns every rule that p's imports break.
func check(p listed) []violation {
	var vs []violation
	add := func(to, rule string) { vs = append(vs, violation{p.rel, to, rule}) }
	cl, placed := classes[p.rel]
	if isAPI(p.rel, p.name) && placed && cl != handler {
		add("(itself)", "a package named …api or …/api is a handler: put it in the handler class")
	}
	services := []class{util, foundation, core, feature}
	for _, to := range p.imports {
		tc, toPlaced := classes[to]
		switch {
		case to == "internal/server" && cl != cli && cl != entry && cl != helper:
			add(to, "no package imports server except cli, cmd/coffer and test helpers (servertest, bench)")
			continue
		case to == "internal/cli" && cl != entry:
			add(to, "only cmd/coffer imports cli")
			continue
		case slices.Contains(services, cl) && isAPI(to, path.Base(to)):
			add(to, fmt.Sprintf("a service package (%s) imports no api package", cl))
			continue
		}
		if !placed || !toPlaced {
			continue // reported as unplaced
		}
		if cl == cli {
			if !slices.Contains(cliAllowed, to) && !strings.HasPrefix(to, "internal/cli/") {
				add(to, "cli imports no service or handler package (it may import only cliAllowed: "+strings.Join(cliAllowed, ", ")+")")
			}
			continue
		}
		if tc == cl && cl != entry {
			continue
		}
		if !slices.Contains(mayImport[cl], tc) {
			add(to, fmt.Sprintf("%s packages may not import %s packages (a lower layer never imports an upper one; %s may import %s)",
				cl, tc, cl, allowedList(cl)))
		}
	}
	// Tests reach a running server through servertest, never by importing server.
	if cl != server && cl != cli && cl != entry && cl != helper {
		for _, to := range p.testImports {
			if to == "internal/server" {
				add(to+" (in a test)", "no package imports server except cli, cmd/coffer and test helpers: start it with internal/servertest")
			}
		}
	}
	if cl == cli {
		vs = append(vs, checkCLIServerFiles(p)...)
	}
	return vs
}

func allowedList(cl class) string {
	var names []string
	for _, c := range mayImport[cl] {
		names = append(names, string(c))
	}
	if len(names) == 0 {
		return "only its own class"
	}
	return strings.Join(names, ", ") + " and its own class"
}

// checkCLIServerFiles makes sure only the `serve` command's files import server.
func checkCLIServerFiles(p listed) []violation {
	var vs []violation
	fset := token.NewFileSet()
	for _, name := range p.goFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.dir, name), nil, parser.ImportsOnly)
		if err != nil {
			vs = append(vs, violation{p.rel + "/" + name, "(parse)", err.Error()})
			continue
		}
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err == nil && ip == module+"/internal/server" && !slices.Contains(cliServerFiles, name) {
				vs = append(vs, violation{p.rel + "/" + name, "internal/server",
					"cli imports server only to run `coffer serve` (" + strings.Join(cliServerFiles, ", ") + ")"})
			}
		}
	}
	return vs
}

// TestRulesCatchBrokenArrows proves that check reports each kind of broken arrow, on
// made-up packages, so that a rule cannot silently stop matching.
func TestRulesCatchBrokenArrows(t *testing.T) {
	tests := []struct {
		name string
		p    listed
		want string // a violation "from → to" that must be reported; "" for none
	}{
		{"service imports an api package", listed{rel: "internal/seal", name: "seal", imports: []string{"internal/vault/api"}}, "internal/seal → internal/vault/api"},
		{"service imports an unplaced …api package", listed{rel: "internal/vault", name: "vault", imports: []string{"internal/encryptionapi"}}, "internal/vault → internal/encryptionapi"},
		{"feature imports server", listed{rel: "internal/registry", name: "registry", imports: []string{"internal/server"}}, "internal/registry → internal/server"},
		{"handler imports cli", listed{rel: "internal/registry/api", name: "api", imports: []string{"internal/cli"}}, "internal/registry/api → internal/cli"},
		{"cli imports a service", listed{rel: "internal/cli", name: "cli", imports: []string{"internal/vault"}}, "internal/cli → internal/vault"},
		{"cli imports a handler", listed{rel: "internal/cli", name: "cli", imports: []string{"internal/mgmt"}}, "internal/cli → internal/mgmt"},
		{"cli imports the wire types", listed{rel: "internal/cli", name: "cli", imports: []string{"internal/mgmt/wire", "internal/config"}}, ""},
		{"store imports another part", listed{rel: "internal/store", name: "store", imports: []string{"internal/seal"}}, "internal/store → internal/seal"},
		{"blobstore driver imports durable", listed{rel: "internal/blobstore/filesystem", name: "filesystem", imports: []string{"internal/blobstore", "internal/durable"}}, ""},
		{"core imports a feature", listed{rel: "internal/kek", name: "kek", imports: []string{"internal/vault"}}, "internal/kek → internal/vault"},
		{"core imports config", listed{rel: "internal/identity", name: "identity", imports: []string{"internal/config"}}, "internal/identity → internal/config"},
		{"core imports the wire grammar", listed{rel: "internal/access", name: "access", imports: []string{"internal/mgmt/wire", "internal/store"}}, ""},
		{"wire imports core", listed{rel: "internal/mgmt/wire", name: "wire", imports: []string{"internal/access"}}, "internal/mgmt/wire → internal/access"},
		{"foundation imports wire", listed{rel: "internal/store", name: "store", imports: []string{"internal/mgmt/wire"}}, "internal/store → internal/mgmt/wire"},
		{"a test imports server", listed{rel: "internal/vault/api", name: "api", testImports: []string{"internal/server"}}, "internal/vault/api → internal/server (in a test)"},
		{"a helper imports server", listed{rel: "internal/servertest", name: "servertest", imports: []string{"internal/server"}}, ""},
		{"an api package placed outside the handlers", listed{rel: "internal/vault", name: "vaultapi"}, "internal/vault → (itself)"},
		{"server imports every part", listed{rel: "internal/server", name: "server", imports: []string{"internal/vault/api", "internal/seal", "internal/config"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range check(tt.p) {
				got = append(got, v.from+" → "+v.to)
			}
			if tt.want == "" {
				if len(got) > 0 {
					t.Fatalf("check reported %v, want nothing", got)
				}
				return
			}
			if !slices.Contains(got, tt.want) {
				t.Fatalf("check reported %v, want %q among them", got, tt.want)
			}
		})
	}
}
