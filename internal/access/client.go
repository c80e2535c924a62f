package access

import (
	"errors"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Client is how a process proves who it is to NATS: credential files only,
// never a secret on the command line.
type Client struct {
	CredsFile    string // a .creds file (user JWT and seed; the nsc way)
	NkeySeedFile string // an nkey seed file (the dev configs' way)
	TLSCert      string // client certificate (mTLS), PEM
	TLSKey       string // its private key, PEM
	TLSCA        string // CA bundle that signed the servers' certificates, PEM
	InboxPrefix  string // default _INBOX_<identity>: the only subjects the identity may subscribe to
}

// AddFlags registers --nats-creds, --nats-nkey-seed, --nats-tls-cert,
// --nats-tls-key, --nats-tls-ca and --nats-inbox-prefix on fs.
func (c *Client) AddFlags(fs *flag.FlagSet, defaultInboxPrefix string) {
	fs.StringVar(&c.CredsFile, "nats-creds", "", "NATS credentials file (user JWT and nkey seed, as nsc writes it)")
	fs.StringVar(&c.NkeySeedFile, "nats-nkey-seed", "", "NATS nkey seed file of this process's identity (deploy/nats/identities/<identity>.nk in dev)")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", "", "client certificate for NATS TLS (PEM file; the server may require it: mTLS)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", "", "private key of --nats-tls-cert (PEM file)")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", "", "CA certificates that signed the NATS servers' certificates (PEM file); setting it turns TLS on")
	fs.StringVar(&c.InboxPrefix, "nats-inbox-prefix", defaultInboxPrefix, "prefix of this process's reply subjects; its identity may subscribe only below it")
}

// Validate reports credential flags that do not go together.
func (c Client) Validate() error {
	switch {
	case c.CredsFile != "" && c.NkeySeedFile != "":
		return errors.New("--nats-creds and --nats-nkey-seed: give one identity, not two")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	return nil
}

// Options returns the nats.go options for c.
func (c Client) Options() ([]nats.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NkeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey-seed %s: %w", c.NkeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}
