package mgmt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// OpenAPI returns the OpenAPI 3 document of the management API, generated from the route
// table (Routes) and, by reflection, from the wire types the routes name.
func OpenAPI() ([]byte, error) {
	g := &schemas{defs: map[string]any{}, seen: map[reflect.Type]string{}}
	errRef := g.schema(reflect.TypeFor[wire.Error]())
	paths := map[string]map[string]any{}
	for _, r := range Routes() {
		path := strings.ReplaceAll(r.Path, "...}", "}")
		op := map[string]any{
			"operationId": r.ID,
			"summary":     r.Summary,
			"tags":        []string{r.Tag},
		}
		if r.Permission != "" {
			op["description"] = "Needs: " + r.Permission + "."
		}
		var params []any
		for _, name := range pathParams(r.Path) {
			params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range r.Query {
			params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.Request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(r.Request))}}}
		}
		ok := map[string]any{"description": http.StatusText(r.Status)}
		switch {
		case r.ID == "openapi":
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		case r.Response != nil:
			content := map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(r.Response))}}
			if r.Stream != "" {
				content[r.Stream] = map[string]any{"schema": g.schema(reflect.TypeFor[wire.GCEvent]())}
			}
			ok["content"] = content
		}
		responses := map[string]any{strconv.Itoa(r.Status): ok}
		if r.Public {
			op["security"] = []any{}
		} else {
			responses["default"] = map[string]any{"description": "An error: 400 BadParameter, 401 Unauthorized, 403 Forbidden, 404 NotFound, 409 Conflict, 429 TooManyRequests, 500 InternalError, 503 InternalError with Retry-After (a key or the metadata database unavailable: retry)",
				"content": map[string]any{"application/json": map[string]any{"schema": errRef}}}
		}
		op["responses"] = responses
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		m := strings.ToLower(r.Method)
		if _, dup := paths[path][m]; dup {
			return nil, fmt.Errorf("openapi: %s %s is listed twice", r.Method, path)
		}
		paths[path][m] = op
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Coffer management API",
			"version":     "v1",
			"description": "The management API of Coffer (" + Prefix + "). Every route but this document takes a management token as a bearer token (the token endpoint's password, client_credentials or refresh_token grant with service=" + wire.AudienceManagement + "). Errors answer {\"error\":{\"code\",\"message\"}}.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": g.defs,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
			},
		},
		"security": []any{map[string]any{"bearer": []string{}}},
	}
	return json.MarshalIndent(doc, "", "  ")
}

var pathParamRE = regexp.MustCompile(`\{([A-Za-z]+)(\.\.\.)?\}`)

func pathParams(path string) []string {
	var out []string
	for _, m := range pathParamRE.FindAllStringSubmatch(path, -1) {
		out = append(out, m[1])
	}
	return out
}

// schemas builds JSON schemas of wire types, naming each struct type once in defs.
type schemas struct {
	defs map[string]any
	seen map[reflect.Type]string
}

var (
	timeType  = reflect.TypeFor[time.Time]()
	bytesType = reflect.TypeFor[wire.Bytes]()
)

// schema returns the schema of t: a $ref for a named struct, inline otherwise.
func (g *schemas) schema(t reflect.Type) map[string]any {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case bytesType:
		return map[string]any{"type": "string", "format": "byte", "description": "base64url, unpadded (padded or standard base64 accepted)"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := schemaName(t)
		if name == "" {
			return g.object(t)
		}
		if _, ok := g.seen[t]; !ok {
			if _, taken := g.defs[name]; taken {
				panic("mgmt: two wire types are both named " + name)
			}
			g.seen[t] = name
			g.defs[name] = nil // placeholder: recursion ends here
			g.defs[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// object is the schema of a struct: its JSON members as encoding/json sees them (embedded
// structs flattened), those without omitempty required.
func (g *schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.schema(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
	}
	walk(t)
	out := map[string]any{"type": "object", "properties": props}
	if required != nil {
		out["required"] = required
	}
	return out
}

// schemaName names a wire struct: its type name, List[T] as ListOfT.
func schemaName(t reflect.Type) string {
	name := t.Name()
	if elem, ok := strings.CutPrefix(name, "List["); ok {
		elem = strings.TrimSuffix(elem, "]")
		return "ListOf" + elem[strings.LastIndex(elem, ".")+1:]
	}
	return name
}
