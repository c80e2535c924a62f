package access

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// Render returns a nats-server authorization block with one nkey user per
// identity: publicKeys maps each identity to its nkey public key (U...).
// Every identity of Identities must be there.
func Render(publicKeys map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("# nats-server authorization: one nkey user per jetsaga identity.\n")
	b.WriteString("# Written by `jetsaga identities` from internal/access; do not edit by hand.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, id := range Identities() {
		pub, ok := publicKeys[id]
		if !ok {
			return "", fmt.Errorf("render authorization: no public key for %s", id)
		}
		if !nkeys.IsValidPublicUserKey(pub) {
			return "", fmt.Errorf("render authorization: %s: %q is not an nkey user public key", id, pub)
		}
		p, err := For(id)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %q\n      permissions: {\n", id, pub)
		fmt.Fprintf(&b, "        publish: {\n          allow: %s\n", list(p.PublishAllow, 10))
		if len(p.PublishDeny) > 0 {
			fmt.Fprintf(&b, "          deny: %s\n", list(p.PublishDeny, 10))
		}
		b.WriteString("        }\n")
		fmt.Fprintf(&b, "        subscribe: {\n          allow: %s\n        }\n", list(p.SubscribeAllow, 10))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func list(subjects []string, indent int) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString("[\n")
	for _, s := range subjects {
		fmt.Fprintf(&b, "%s  %q\n", pad, s)
	}
	b.WriteString(pad + "]")
	return b.String()
}

// SeedFile is the name of an identity's nkey seed file in a folder of
// identities: <identity>.nk.
func SeedFile(identity string) string { return identity + ".nk" }

// AuthFile is the name of the authorization block in a folder of identities.
const AuthFile = "auth.conf"

// Generate makes a fresh nkey user for every identity, writes each seed to
// dir/<identity>.nk (mode 0600) and the authorization block to dir/auth.conf.
// An existing seed is kept, so running it again only fills what is missing
// and rewrites auth.conf with the current permissions.
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identities folder: %w", err)
	}
	pubs := map[string]string{}
	for _, id := range Identities() {
		path := filepath.Join(dir, SeedFile(id))
		kp, err := LoadSeed(path)
		if errors.Is(err, os.ErrNotExist) {
			if kp, err = nkeys.CreateUser(); err != nil {
				return fmt.Errorf("create nkey for %s: %w", id, err)
			}
			seed, err := kp.Seed()
			if err != nil {
				return fmt.Errorf("seed of %s: %w", id, err)
			}
			if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
				return fmt.Errorf("write seed of %s: %w", id, err)
			}
		} else if err != nil {
			return err
		}
		if pubs[id], err = kp.PublicKey(); err != nil {
			return fmt.Errorf("public key of %s: %w", id, err)
		}
	}
	conf, err := Render(pubs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AuthFile), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", AuthFile, err)
	}
	return nil
}

// LoadSeed reads an nkey seed file (the seed on a line of its own; other
// lines, such as comments, are skipped).
func LoadSeed(path string) (nkeys.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nkey seed: %w", err)
	}
	for line := range bytes.Lines(raw) {
		line = bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("SU")) {
			kp, err := nkeys.FromSeed(line)
			if err != nil {
				return nil, fmt.Errorf("nkey seed %s: %w", path, err)
			}
			return kp, nil
		}
	}
	return nil, fmt.Errorf("nkey seed %s: no user seed (a line starting with SU)", path)
}

// PublicKeys reads the public keys of every identity's seed in dir.
func PublicKeys(dir string) (map[string]string, error) {
	pubs := map[string]string{}
	for _, id := range Identities() {
		kp, err := LoadSeed(filepath.Join(dir, SeedFile(id)))
		if err != nil {
			return nil, err
		}
		if pubs[id], err = kp.PublicKey(); err != nil {
			return nil, err
		}
	}
	return pubs, nil
}
