package access_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetsaga/jetsaga/internal/access"
)

const devDir = "../../deploy/nats/identities"

// The committed dev authorization block is what Render makes of the
// committed dev seeds and today's permissions: run
// `jetsaga identities deploy/nats/identities` after changing permissions.
func TestDevAuthorizationIsCurrent(t *testing.T) {
	t.Parallel()
	pubs, err := access.PublicKeys(devDir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := access.Render(pubs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(devDir, access.AuthFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: run `go run ./cmd/jetsaga identities deploy/nats/identities`", access.AuthFile)
	}
}

// nats-server reads the block as written: every identity a user with its
// permissions.
func TestAuthorizationParses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := access.Generate(dir); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, access.AuthFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != len(access.Identities()) {
		t.Fatalf("%d nkey users, want %d", len(opts.Nkeys), len(access.Identities()))
	}
	pubs, err := access.PublicKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range access.Identities() {
		want, _ := access.For(id)
		i := slices.IndexFunc(opts.Nkeys, func(u *server.NkeyUser) bool { return u.Nkey == pubs[id] })
		if i < 0 {
			t.Fatalf("%s: no user", id)
		}
		p := opts.Nkeys[i].Permissions
		if !slices.Equal(p.Publish.Allow, want.PublishAllow) || !slices.Equal(p.Subscribe.Allow, want.SubscribeAllow) ||
			(len(want.PublishDeny) > 0 && !slices.Equal(p.Publish.Deny, want.PublishDeny)) {
			t.Errorf("%s: parsed permissions %+v %+v, want %+v", id, p.Publish, p.Subscribe, want)
		}
	}
	// Generate again keeps the seeds.
	if err := access.Generate(dir); err != nil {
		t.Fatal(err)
	}
	again, err := access.PublicKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for id, pub := range pubs {
		if again[id] != pub {
			t.Errorf("%s: a second Generate replaced the seed", id)
		}
	}
}

func TestClientValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		c       access.Client
		wantErr bool
	}{
		{"none", access.Client{}, false},
		{"nkey", access.Client{NkeySeedFile: filepath.Join(devDir, "order.nk")}, false},
		{"creds and nkey", access.Client{CredsFile: "a.creds", NkeySeedFile: "b.nk"}, true},
		{"cert without key", access.Client{TLSCert: "c.pem"}, true},
		{"missing seed file", access.Client{NkeySeedFile: "/nonexistent.nk"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Options()
			if (err != nil) != tc.wantErr {
				t.Errorf("Options() error = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}
