package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// do sends a request, answering a Bearer challenge with a token from its realm (Basic
// credentials when given) and a Basic challenge with the credentials.
func (t *target) do(ctx context.Context, method, path, scope string, body func() io.Reader, length int64, hdr map[string]string) (*http.Response, error) {
	for attempt := 0; attempt < 2; attempt++ {
		u := path
		if !strings.HasPrefix(u, "http") {
			u = t.url + path
		}
		var b io.Reader
		if body != nil {
			b = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, u, b)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.ContentLength = length
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		t.mu.Lock()
		tok := t.tokens[scope]
		t.mu.Unlock()
		switch {
		case tok == "basic":
			req.SetBasicAuth(t.user, t.pass)
		case tok != "":
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := t.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt == 1 {
			return resp, nil
		}
		ch := resp.Header.Get("WWW-Authenticate")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err := t.authenticate(ctx, ch, scope); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("unreachable")
}

func (t *target) authenticate(ctx context.Context, challenge, scope string) error {
	if strings.HasPrefix(strings.ToLower(challenge), "basic") {
		t.mu.Lock()
		t.tokens[scope] = "basic"
		t.mu.Unlock()
		return nil
	}
	params := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(challenge, "Bearer "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			params[k] = strings.Trim(v, `"`)
		}
	}
	q := url.Values{"service": {params["service"]}, "scope": {scope}}
	req, err := http.NewRequestWithContext(ctx, "GET", params["realm"]+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if t.user != "" {
		req.SetBasicAuth(t.user, t.pass)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: token: %d %s", t.name, resp.StatusCode, b)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return err
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	t.mu.Lock()
	t.tokens[scope] = tr.Token
	t.mu.Unlock()
	return nil
}

// pushBlob uploads data: POST, then PATCH (streamed) and PUT for a big blob, or a PUT
// carrying the bytes for a small one; the way docker and containerd push.
func (t *target) pushBlob(ctx context.Context, repo string, data []byte, chunked bool) error {
	scope := "repository:" + repo + ":pull,push"
	d := digest.FromBytes(data)
	resp, err := t.do(ctx, "POST", "/v2/"+repo+"/blobs/uploads/", scope, nil, 0, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("%s: POST upload: %d", t.name, resp.StatusCode)
	}
	loc := t.abs(resp.Header.Get("Location"))
	body := func() io.Reader { return bytes.NewReader(data) }
	if chunked {
		resp, err = t.do(ctx, "PATCH", loc, scope, body, int64(len(data)), map[string]string{"Content-Type": "application/octet-stream"})
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			return fmt.Errorf("%s: PATCH: %d", t.name, resp.StatusCode)
		}
		loc = t.abs(resp.Header.Get("Location"))
		body = nil
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	n := int64(len(data))
	if body == nil {
		n = 0
	}
	resp, err = t.do(ctx, "PUT", loc+sep+"digest="+url.QueryEscape(d.String()), scope, body, n, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("%s: PUT upload: %d %s", t.name, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// warm gets the tokens for repo before a figure is timed: token requests check a
// password, which is not what the figures measure.
func (t *target) warm(ctx context.Context, repo string) {
	for _, scope := range []string{"repository:" + repo + ":pull,push", "repository:" + repo + ":pull"} {
		resp, err := t.do(ctx, "HEAD", "/v2/"+repo+"/blobs/"+digest.FromString("warm").String(), scope, nil, 0, nil)
		must(err)
		resp.Body.Close()
	}
}

func (t *target) abs(loc string) string {
	if strings.HasPrefix(loc, "http") {
		return loc
	}
	return t.url + loc
}

// pullBuffer is --read-buffer: how many bytes each Read of a pulled body asks for (0: what
// io.Copy asks, 32 KiB). With HTTP/2 it sets how often Go's client sends WINDOW_UPDATE
// frames, after every Read of 4 KiB or more.
var (
	pullBuffer  int
	pullBuffers = sync.Pool{New: func() any { b := make([]byte, pullBuffer); return &b }}
)

func (t *target) pullBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	resp, err := t.do(ctx, "GET", "/v2/"+repo+"/blobs/"+d.String(), "repository:"+repo+":pull", nil, 0, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: GET blob: %d", t.name, resp.StatusCode)
	}
	v := d.Verifier()
	var n int64
	if pullBuffer > 0 {
		bp := pullBuffers.Get().(*[]byte)
		n, err = io.CopyBuffer(v, resp.Body, *bp)
		pullBuffers.Put(bp)
	} else {
		n, err = io.Copy(v, resp.Body)
	}
	if err != nil {
		return n, err
	}
	if !v.Verified() {
		return n, fmt.Errorf("%s: pulled blob %s does not match its digest", t.name, d)
	}
	return n, nil
}
