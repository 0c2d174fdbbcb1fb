// Package kmsplugin is Coffer's Kubernetes KMS v2 plugin (docs/kms.md): the gRPC
// KeyManagementService of k8s.io/kms/apis/v2 (Status, Encrypt, Decrypt) backed by a key in a
// vault, reached through a kek.KEK.
//
// The plugin holds one write key version at a time. Status answers the exact versioned key
// id of that version as its key_id, so every rotation makes the apiserver generate a new
// seed; Encrypt wraps the seed under the same version and answers the same key_id (the
// switch is one atomic pointer swap, so Status and Encrypt never disagree). Decrypt routes
// by key_id: a key_id names a key version, so any version of any key this cluster has used
// (the write key and every decrypt-only key of its settings) unwraps; a key_id of a key the
// cluster never used is refused without a vault call, and a key_id the vault does not know
// is remembered as unknown for a while, so the apiserver's retries cost no vault call.
//
// Health is a cached self-test (wrap and unwrap a random secret under the write version)
// run every SelfTestInterval and after every key change: Status never calls the vault, and
// answers an error while the last self-test failed, which is what makes the apiserver stop
// using a key it can no longer reach. A poll (every PollInterval, jittered, or at once on
// Trigger) re-reads the cluster's settings and the write key's newest version.
//
// Nothing the plugin logs carries key material: only key ids, the apiserver's request uid,
// sizes and errors.
package kmsplugin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/kek"
)

// AnnotationDomain is the domain of the annotation keys the plugin writes (two labels or
// more, as the apiserver requires).
const AnnotationDomain = "kms.coffer.dev"

// MaxKeyIDLen is the apiserver's limit on key_id.
const MaxKeyIDLen = 1024

// Settings are what the plugin needs to know of its cluster.
type Settings struct {
	// WriteKey is the versionless (or versioned, to pin one version) id of the key that
	// wraps new seeds.
	WriteKey string
	// DecryptKeys are the earlier keys (versionless ids) whose versions still unwrap.
	DecryptKeys []string
}

// Source gives the cluster's settings (from the Coffer server, or fixed flags) and hears
// the plugin's health.
type Source interface {
	Settings(ctx context.Context) (Settings, error)
	// Report tells the settings' owner the plugin's last Status; errors are only logged.
	Report(ctx context.Context, r Report) error
}

// Report is the plugin's state as it reports it.
type Report struct {
	KeyID     string    `json:"keyId"`
	Healthz   string    `json:"healthz"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
}

// KEKs gives the driver that reaches a key (versionless id).
type KEKs interface {
	KEK(ctx context.Context, keyID string) (kek.KEK, error)
}

// Options configure a Plugin.
type Options struct {
	Source Source
	KEKs   KEKs
	// PollInterval is how often the settings and the write key's newest version are read
	// (default 6h); each wait is jittered by up to a tenth.
	PollInterval time.Duration
	// SelfTestInterval is how often the health self-test runs (default 30s).
	SelfTestInterval time.Duration
	// NegativeTTL is how long an unknown key_id is remembered (default 10 minutes).
	NegativeTTL time.Duration
	Metrics     *Metrics
	Log         *slog.Logger
	Now         func() time.Time
}

// state is the plugin's current key, swapped atomically.
type state struct {
	settings Settings
	// writeKID is the versioned id of the write key version.
	writeKID string
	// known are the versionless ids (lower case) of every key of the cluster.
	known map[string]bool
}

type health struct {
	err error
	at  time.Time
	kid string
}

// Plugin is the KMS v2 service.
type Plugin struct {
	kmsapi.UnimplementedKeyManagementServiceServer
	o       Options
	cur     atomic.Pointer[state]
	health  atomic.Pointer[health]
	trigger chan struct{}
	// pollMu makes polls (Start, Run, Refresh) one at a time, so an older settings read never
	// replaces a newer one.
	pollMu sync.Mutex

	negMu    sync.Mutex
	negative map[string]time.Time
}

// New returns a plugin; Start loads its first settings.
func New(o Options) (*Plugin, error) {
	if o.Source == nil || o.KEKs == nil {
		return nil, errors.New("kms plugin: a settings source and a KEK resolver are required")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 6 * time.Hour
	}
	if o.SelfTestInterval <= 0 {
		o.SelfTestInterval = 30 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Plugin{o: o, trigger: make(chan struct{}, 1), negative: map[string]time.Time{}}
	p.health.Store(&health{err: errors.New("the plugin has not checked its key yet")})
	return p, nil
}

// Start reads the settings and the write key version, and runs the first self-test. A
// failure is returned (so the caller can log it) but the plugin keeps trying in Run.
func (p *Plugin) Start(ctx context.Context) error { return p.Refresh(ctx) }

// Refresh polls now and, when the poll succeeded, runs the self-test, and returns when both
// are done (the in-process plugin after a change of its cluster on the same server).
func (p *Plugin) Refresh(ctx context.Context) error {
	p.pollMu.Lock()
	defer p.pollMu.Unlock()
	err := p.poll(ctx)
	if err == nil {
		err = p.SelfTest(ctx)
	}
	return err
}

// Run polls and self-tests until ctx ends.
func (p *Plugin) Run(ctx context.Context) {
	selfTest := time.NewTicker(p.o.SelfTestInterval)
	defer selfTest.Stop()
	poll := time.NewTimer(p.jittered())
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-selfTest.C:
			if p.cur.Load() == nil {
				p.Poll(ctx) //nolint:errcheck // logged in Poll
			}
			p.SelfTest(ctx) //nolint:errcheck // reflected in Status
		case <-poll.C:
			p.pollAndTest(ctx)
			poll.Reset(p.jittered())
		case <-p.trigger:
			p.pollAndTest(ctx)
			if !poll.Stop() {
				select {
				case <-poll.C:
				default:
				}
			}
			poll.Reset(p.jittered())
		}
	}
}

func (p *Plugin) pollAndTest(ctx context.Context) {
	p.Refresh(ctx) //nolint:errcheck // logged in poll, reflected in Status
}

// jittered is the poll interval plus up to a tenth of it.
func (p *Plugin) jittered() time.Duration {
	d := p.o.PollInterval
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d/10)+1))
	if err != nil {
		return d
	}
	return d + time.Duration(n.Int64())
}

// Trigger asks Run to poll now (SIGHUP, `coffer kms rotate-now`, POST /poll).
func (p *Plugin) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Poll reads the settings and the write key's newest version, and switches to it.
func (p *Plugin) Poll(ctx context.Context) error {
	p.pollMu.Lock()
	defer p.pollMu.Unlock()
	return p.poll(ctx)
}

func (p *Plugin) poll(ctx context.Context) error {
	st, err := p.o.Source.Settings(ctx)
	if err != nil {
		p.o.Log.Error("kms plugin: read the cluster's key settings", "err", err)
		p.o.Metrics.vaultError("settings")
		return fmt.Errorf("read the cluster's key settings: %w", err)
	}
	id, err := kek.ParseKeyID(st.WriteKey)
	if err != nil {
		return err
	}
	k, err := p.o.KEKs.KEK(ctx, id.Versionless())
	if err != nil {
		p.failed(err)
		return fmt.Errorf("reach key %s: %w", st.WriteKey, err)
	}
	info, err := kek.CheckKey(ctx, k, st.WriteKey)
	if err != nil {
		p.failed(err)
		p.o.Metrics.vaultError(errorKind(err))
		p.o.Log.Error("kms plugin: read the write key", "key", st.WriteKey, "err", err)
		return err
	}
	if len(info.KID) > MaxKeyIDLen {
		return fmt.Errorf("key id %s is longer than the apiserver's %d-byte limit on key_id", info.KID, MaxKeyIDLen)
	}
	next := &state{settings: st, writeKID: info.KID, known: map[string]bool{strings.ToLower(id.Versionless()): true}}
	for _, d := range st.DecryptKeys {
		if did, err := kek.ParseKeyID(d); err == nil {
			next.known[strings.ToLower(did.Versionless())] = true
		}
	}
	prev := p.cur.Swap(next)
	if prev == nil || prev.writeKID != next.writeKID {
		from := ""
		if prev != nil {
			from = prev.writeKID
		}
		p.o.Log.Info("kms plugin: write key version", "key_id", next.writeKID, "previous", from, "decrypt_only_keys", len(st.DecryptKeys))
		p.o.Metrics.setKey(next.writeKID)
		p.forgetNegative()
	}
	return nil
}

// failed marks the plugin unhealthy after a vault error outside the self-test.
func (p *Plugin) failed(err error) {
	h := p.health.Load()
	p.health.Store(&health{err: err, at: p.o.Now(), kid: h.kid})
}

// SelfTest wraps and unwraps a random secret under the write version.
func (p *Plugin) SelfTest(ctx context.Context) error {
	st := p.cur.Load()
	if st == nil {
		err := errors.New("the plugin has no key settings yet")
		p.health.Store(&health{err: err, at: p.o.Now()})
		return err
	}
	err := p.selfTest(ctx, st)
	p.health.Store(&health{err: err, at: p.o.Now(), kid: st.writeKID})
	r := Report{KeyID: st.writeKID, Healthz: "ok", CheckedAt: p.o.Now().UTC()}
	if err != nil {
		r.Healthz, r.Error = "error", err.Error()
		p.o.Metrics.vaultError(errorKind(err))
		p.o.Log.Error("kms plugin: self-test failed; Status answers an error until it passes", "key_id", st.writeKID, "err", err)
	}
	p.o.Metrics.setHealthy(err == nil)
	if rerr := p.o.Source.Report(ctx, r); rerr != nil {
		p.o.Log.Warn("kms plugin: report status to the Coffer server", "err", rerr)
	}
	return err
}

func (p *Plugin) selfTest(ctx context.Context, st *state) error {
	k, err := p.o.KEKs.KEK(ctx, st.writeKID)
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	_, _, err = kek.WrapVerified(ctx, k, st.writeKID, secret)
	return err
}

// Healthy reports the last self-test: nil when it passed.
func (p *Plugin) Healthy() (keyID string, err error) {
	h := p.health.Load()
	if h.err != nil {
		return h.kid, h.err
	}
	if age := p.o.Now().Sub(h.at); age > 3*p.o.SelfTestInterval+time.Minute {
		return h.kid, fmt.Errorf("the last key self-test is %s old", age.Round(time.Second))
	}
	return h.kid, nil
}

// Status answers the cached health and the write key version.
func (p *Plugin) Status(ctx context.Context, _ *kmsapi.StatusRequest) (*kmsapi.StatusResponse, error) {
	start := p.o.Now()
	st := p.cur.Load()
	_, err := p.Healthy()
	if err == nil && st == nil {
		err = errors.New("no key settings")
	}
	if err != nil {
		p.o.Metrics.observe("status", "error", start, p.o.Now())
		return nil, status.Errorf(codes.Unavailable, "coffer kms plugin: the key is not usable: %v", err)
	}
	p.o.Metrics.observe("status", "ok", start, p.o.Now())
	return &kmsapi.StatusResponse{Version: "v2", Healthz: "ok", KeyId: st.writeKID}, nil
}

// Encrypt wraps the apiserver's seed under the write key version.
func (p *Plugin) Encrypt(ctx context.Context, req *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	start := p.o.Now()
	res, kid, err := p.encrypt(ctx, req)
	result := "ok"
	if err != nil {
		result = "error"
		p.o.Log.Error("kms plugin: encrypt", "uid", req.GetUid(), "key_id", kid, "err", err)
	} else {
		p.o.Log.Info("kms plugin: encrypt", "uid", req.GetUid(), "key_id", kid, "size", len(req.GetPlaintext()))
	}
	p.o.Metrics.observe("encrypt", result, start, p.o.Now())
	return res, err
}

func (p *Plugin) encrypt(ctx context.Context, req *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, string, error) {
	st := p.cur.Load()
	if st == nil {
		return nil, "", status.Error(codes.Unavailable, "coffer kms plugin: no key settings yet")
	}
	if n := len(req.GetPlaintext()); n == 0 || n > 512 {
		return nil, st.writeKID, status.Errorf(codes.InvalidArgument, "coffer kms plugin: plaintext of %d bytes: the apiserver's seed is 32 bytes (at most 512 can be wrapped)", n)
	}
	k, err := p.o.KEKs.KEK(ctx, st.writeKID)
	if err != nil {
		return nil, st.writeKID, vaultStatus(err)
	}
	_, wrapped, err := k.WrapKey(ctx, st.writeKID, req.GetPlaintext())
	if err != nil {
		p.o.Metrics.vaultError(errorKind(err))
		return nil, st.writeKID, vaultStatus(err)
	}
	if len(wrapped) > 1024 {
		return nil, st.writeKID, status.Errorf(codes.FailedPrecondition, "coffer kms plugin: key %s gives %d-byte ciphertexts; the apiserver takes at most 1024 (use an RSA key of 2048 to 4096 bits)", st.writeKID, len(wrapped))
	}
	return &kmsapi.EncryptResponse{Ciphertext: wrapped, KeyId: st.writeKID}, st.writeKID, nil
}

// Decrypt unwraps a seed under the key version its key_id names.
func (p *Plugin) Decrypt(ctx context.Context, req *kmsapi.DecryptRequest) (*kmsapi.DecryptResponse, error) {
	start := p.o.Now()
	res, err := p.decrypt(ctx, req)
	result := "ok"
	if err != nil {
		result = "error"
		if status.Code(err) == codes.NotFound {
			result = "unknown_key"
		}
		p.o.Log.Warn("kms plugin: decrypt", "uid", req.GetUid(), "key_id", clip(req.GetKeyId()), "err", err)
	} else {
		p.o.Log.Info("kms plugin: decrypt", "uid", req.GetUid(), "key_id", req.GetKeyId())
	}
	p.o.Metrics.observe("decrypt", result, start, p.o.Now())
	return res, err
}

func (p *Plugin) decrypt(ctx context.Context, req *kmsapi.DecryptRequest) (*kmsapi.DecryptResponse, error) {
	st := p.cur.Load()
	if st == nil {
		return nil, status.Error(codes.Unavailable, "coffer kms plugin: no key settings yet")
	}
	keyID := req.GetKeyId()
	if len(req.GetCiphertext()) == 0 || len(req.GetCiphertext()) > 1024 {
		return nil, status.Errorf(codes.InvalidArgument, "coffer kms plugin: ciphertext of %d bytes (want 1 to 1024)", len(req.GetCiphertext()))
	}
	if p.isNegative(keyID) {
		return nil, status.Errorf(codes.NotFound, "coffer kms plugin: key_id %q is not a key version of this cluster (remembered as unknown)", clip(keyID))
	}
	id, err := kek.ParseKeyID(keyID)
	if err != nil || id.Version == "" || !st.known[strings.ToLower(id.Versionless())] {
		p.remember(keyID)
		return nil, status.Errorf(codes.NotFound, "coffer kms plugin: key_id %q is not a key version of this cluster: its keys are %s", clip(keyID), strings.Join(knownList(st), ", "))
	}
	k, err := p.o.KEKs.KEK(ctx, keyID)
	if err != nil {
		return nil, vaultStatus(err)
	}
	plain, err := k.UnwrapKey(ctx, keyID, req.GetCiphertext())
	if err != nil {
		p.o.Metrics.vaultError(errorKind(err))
		if errors.Is(err, kek.ErrNotFound) {
			p.remember(keyID)
		}
		return nil, vaultStatus(err)
	}
	return &kmsapi.DecryptResponse{Plaintext: plain}, nil
}

func knownList(st *state) []string {
	out := []string{st.settings.WriteKey}
	out = append(out, st.settings.DecryptKeys...)
	return out
}

func (p *Plugin) isNegative(keyID string) bool {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	until, ok := p.negative[keyID]
	if ok && p.o.Now().After(until) {
		delete(p.negative, keyID)
		return false
	}
	return ok
}

// remember caches keyID as unknown; the cache holds at most 4096 entries.
func (p *Plugin) remember(keyID string) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if len(p.negative) >= 4096 {
		now := p.o.Now()
		for k, until := range p.negative {
			if now.After(until) || len(p.negative) >= 4096 {
				delete(p.negative, k)
			}
		}
	}
	p.negative[keyID] = p.o.Now().Add(p.o.NegativeTTL)
}

// forgetNegative drops the unknown key_ids: new settings may know them.
func (p *Plugin) forgetNegative() {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	clear(p.negative)
}

// vaultStatus maps a vault error to a gRPC status with the vault's words.
func vaultStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, kek.ErrForbidden), errors.Is(err, kek.ErrNetworkDenied):
		code = codes.PermissionDenied
	case errors.Is(err, kek.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, kek.ErrDisabled):
		code = codes.FailedPrecondition
	case errors.Is(err, kek.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, kek.ErrInvalid):
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "coffer kms plugin: %v", err)
}

// errorKind names a vault error for the metrics.
func errorKind(err error) string {
	switch {
	case errors.Is(err, kek.ErrForbidden):
		return "forbidden"
	case errors.Is(err, kek.ErrNetworkDenied):
		return "network_denied"
	case errors.Is(err, kek.ErrNotFound):
		return "not_found"
	case errors.Is(err, kek.ErrDisabled):
		return "disabled"
	case errors.Is(err, kek.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, kek.ErrInvalid):
		return "invalid"
	}
	return "other"
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
