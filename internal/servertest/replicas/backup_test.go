package replicas_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/cofferhq/coffer/internal/blobstore/s3/s3test"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestBackupAndRestore follows the procedure of docs/scale-out.md ("Backup and restore")
// on two replicas: pg_dump of the database first, then a copy of every object of the
// bucket with an S3 client. A push that lands between the two, a push, a deletion and a
// new vault key after the backup are not in it. The dump is restored with psql into a
// fresh database and the objects into a fresh bucket of another gateway; `coffer serve`
// on that pair with the same vault root key (copied, as a mounted secret is, into a
// directory of its own) serves every image of the backup intact, logs the administrator
// in, holds the vault key (it decrypts what it encrypted before the backup) and verifies
// the audit trail; beside the replicas' old audit checkpoint, verify reports the records
// the restore rolled back. Started with another root key, it stops with the clear error.
func TestBackupAndRestore(t *testing.T) {
	c := startCluster(t, nil)
	ctx := t.Context()
	auth := &authn.Basic{Username: "admin", Password: c.password}
	viaProxy := []remote.Option{remote.WithAuth(auth), remote.WithTransport(c.client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	push := func(repoTag string, img v1.Image) {
		t.Helper()
		ref, _ := name.ParseReference(c.addr() + "/" + repoTag)
		if err := remote.Write(ref, img, viaProxy...); err != nil {
			t.Fatalf("push %s: %v", repoTag, err)
		}
	}
	backedUp := map[string]v1.Image{
		"team/app:v1": randomImage(t, 9<<20, 4096), // more than one 8 MiB part in the bucket
		"team/app:v2": randomImage(t, 300<<10),
		"other/lib:1": randomImage(t, 64<<10),
	}
	for rt, img := range backedUp {
		push(rt, img)
	}
	mgmt := adminEnv(t, c.replicas[1], c.password)
	mgmt.CreateVault(t, "backup-vault", nil)
	var me wire.Whoami
	mgmt.MustDo(t, "GET", "/coffer/v1/whoami", nil, &me)
	mgmt.SetPolicy(t, "backup-vault", me.ID, "create", "get", "encrypt", "decrypt")
	var key wire.Key
	mgmt.MustDo(t, "POST", "/coffer/v1/vaults/backup-vault/keys/kept/create", wire.CreateKeyRequest{Kty: "RSA", Size: 2048}, &key)
	plaintext := []byte("a secret sealed before the backup")
	var sealed wire.KeyOpResult
	mgmt.MustDo(t, "POST", "/coffer/v1/vaults/backup-vault/keys/kept/encrypt", wire.KeyOpRequest{Alg: "RSA-OAEP-256", Value: plaintext}, &sealed)

	// The backup: the database first (pg_dump reads one consistent snapshot) ...
	dump := c.pg.Dump(t, c.dbName)
	// ... a push acknowledged between the dump and the bucket copy: its objects are in the
	// copy, its rows are not (orphans the restored server's GC removes after the grace) ...
	between := randomImage(t, 128<<10)
	push("team/app:between", between)
	// ... then every object of the bucket, as `aws s3 sync s3://coffer ./backup` copies it.
	src := s3Client(c.bucket.Endpoint)
	objects := filepath.Join(t.TempDir(), "bucket")
	n := downloadBucket(ctx, t, src, "coffer", objects)
	t.Logf("backup: dump of %d bytes, %d objects", len(dump), n)

	// After the backup: a push, a deletion and a new key, none of which the restore has.
	after := randomImage(t, 32<<10)
	push("team/app:after", after)
	v1Ref, _ := name.ParseReference(c.addr() + "/team/app:v1")
	desc, err := remote.Head(v1Ref, viaProxy...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(v1Ref.Context().Digest(desc.Digest.String()), viaProxy...); err != nil {
		t.Fatalf("delete team/app:v1: %v", err)
	}
	mgmt.MustDo(t, "POST", "/coffer/v1/vaults/backup-vault/keys/later/create", wire.CreateKeyRequest{Kty: "RSA", Size: 2048}, nil)

	// The restore: a fresh database loaded from the dump, a fresh bucket (on another
	// gateway, another bucket name) loaded with the objects at the same keys.
	restoredDB := c.pg.NewDatabase(t)
	c.pg.Restore(t, restoredDB, dump)
	gw := s3test.Start(t, "coffer-restored")
	uploadBucket(ctx, t, s3Client(gw.Endpoint), "coffer-restored", objects)
	blobs := c.blobs
	blobs.URL, blobs.S3Endpoint = "s3://coffer-restored/registry", gw.Endpoint
	restoredCfg := func(rootKeyFile, db string) config.Server {
		cfg := config.Defaults()
		cfg.DataDir = t.TempDir()
		cfg.Listen = "127.0.0.1:0"
		cfg.Metadata = c.pg.URL(db)
		cfg.Vault.RootKeyFile = rootKeyFile
		cfg.BlobStore = blobs
		return cfg
	}

	// Another root key first: the restore cannot be read, and the server says why.
	otherKey := filepath.Join(t.TempDir(), "vault-root.key")
	root, _, err := vault.LoadRootKeyWith(ctx, otherKey, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	clear(root)
	if inst, err := servertest.StartConfig(restoredCfg(otherKey, restoredDB)); err == nil {
		inst.Stop()
		t.Fatal("a server started with another vault root key on the restored database")
	} else if !strings.Contains(err.Error(), "sealed under another vault root key") {
		t.Fatalf("start with another root key: %v, want the error naming the root key", err)
	}

	// The same root key, copied into a directory of its own (as a mounted secret: no old
	// audit checkpoint beside it).
	raw, err := os.ReadFile(c.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	sameKey := filepath.Join(t.TempDir(), "vault-root.key")
	if err := os.WriteFile(sameKey, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	restored, err := servertest.StartConfig(restoredCfg(sameKey, restoredDB))
	if err != nil {
		t.Fatalf("coffer serve on the restored database and bucket: %v", err)
	}
	t.Cleanup(restored.Stop)

	onRestored := []remote.Option{remote.WithAuth(auth), remote.WithTransport(restored.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	for rt, img := range backedUp { // team/app:v1 too: deleted after the backup
		ref, _ := name.ParseReference(restored.Addr + "/" + rt)
		pullVerified(t, ref, img, onRestored...)
	}
	for _, rt := range []string{"team/app:between", "team/app:after"} {
		ref, _ := name.ParseReference(restored.Addr + "/" + rt)
		_, err := remote.Image(ref, onRestored...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			t.Fatalf("%s, pushed after the dump, on the restored server: %v, want 404", rt, err)
		}
	}

	// The administrator logs in with the password of the backup, the vault key is there
	// and opens what it sealed before the backup, the later key is not.
	rmgmt := adminEnv(t, restored, c.password)
	var got wire.Key
	rmgmt.MustDo(t, "GET", "/coffer/v1/vaults/backup-vault/keys/kept", nil, &got)
	if got.Version != key.Version || string(got.JWK.N) != string(key.JWK.N) { // the kid names the server's address
		t.Fatalf("restored key %s differs from the backed-up %s", got.ID, key.ID)
	}
	var opened wire.KeyOpResult
	rmgmt.MustDo(t, "POST", "/coffer/v1/vaults/backup-vault/keys/kept/decrypt", wire.KeyOpRequest{Alg: "RSA-OAEP-256", Value: sealed.Value}, &opened)
	if string(opened.Value) != string(plaintext) {
		t.Fatalf("decrypted %q after the restore, want %q", opened.Value, plaintext)
	}
	var apiErr *vaulttest.APIError
	if err := rmgmt.Do("GET", "/coffer/v1/vaults/backup-vault/keys/later", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("key made after the backup, on the restored server: %v, want 404", err)
	}
	var verify wire.AuditVerifyResult
	rmgmt.MustDo(t, "GET", "/coffer/v1/audit/verify", nil, &verify)
	if !verify.OK {
		t.Fatalf("audit trail of the restored database: broken at %d: %s", verify.BrokenAt, verify.Problem)
	}

	// The replicas' old checkpoint (beside the original key file) is ahead of the restored
	// trail: a server started with it on another restore of the same dump reports the
	// records the restore rolled back.
	staleDB := c.pg.NewDatabase(t)
	c.pg.Restore(t, staleDB, dump)
	stale, err := servertest.StartConfig(restoredCfg(c.rootKey, staleDB))
	if err != nil {
		t.Fatalf("coffer serve on a restore beside the old checkpoint: %v", err)
	}
	t.Cleanup(stale.Stop)
	adminEnv(t, stale, c.password).MustDo(t, "GET", "/coffer/v1/audit/verify", nil, &verify)
	if verify.OK || !strings.Contains(verify.Problem, "removed") {
		t.Fatalf("audit verify beside the old checkpoint: %+v, want the records the restore removed reported", verify)
	}
	t.Logf("beside the old checkpoint: %s", verify.Problem)
}

func s3Client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
	})
}

// downloadBucket copies every object of bucket into dir (key = path under dir).
func downloadBucket(ctx context.Context, t *testing.T, cl *s3.Client, bucket, dir string) int {
	t.Helper()
	n := 0
	pages := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if strings.HasSuffix(key, "/") {
				continue // a directory marker of the gateway
			}
			out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			b, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			p := filepath.Join(dir, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("bucket %s holds no object", bucket)
	}
	return n
}

// uploadBucket puts every file under dir into bucket at its path.
func uploadBucket(ctx context.Context, t *testing.T, cl *s3.Client, bucket, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(filepath.ToSlash(rel)), Body: f})
		return err
	})
	if err != nil {
		t.Fatalf("restore the bucket: %v", err)
	}
}
