package deploy_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/inventory"
	"github.com/jetsaga/jetsaga/order"
	"github.com/jetsaga/jetsaga/payment"
	"github.com/jetsaga/jetsaga/readmodel"
)

var services = []string{"order", "inventory", "payment", "readmodel"}

// binaryFlags is the flag set of a service binary, built as its
// cmd/<service>/main.go builds it.
func binaryFlags(t *testing.T, svc string) *flag.FlagSet {
	t.Helper()
	fs := flag.NewFlagSet(svc, flag.ContinueOnError)
	var cfg service.Config
	service.AddFlags(fs, &cfg, "")
	switch svc {
	case "order":
		order.AddFlags(fs, &order.Config{})
	case "inventory":
		inventory.AddFlags(fs, &inventory.Config{})
	case "payment":
		payment.AddFlags(fs, &payment.Config{})
	case "readmodel":
		readmodel.AddFlags(fs, &readmodel.Config{})
	default:
		t.Fatalf("no binary %q", svc)
	}
	return fs
}

// checkArgs reports each argument of a service's command line that its
// binary does not take: every --flag must be one of its flags, and its
// value must parse.
func checkArgs(t *testing.T, where, svc string, args []string) {
	t.Helper()
	fs := binaryFlags(t, svc)
	fs.SetOutput(new(strings.Builder))
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fs.Lookup(name) == nil {
			t.Errorf("%s: %s has no flag %s", where, svc, a)
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Errorf("%s: %s %q: %v", where, svc, args, err)
	}
	if fs.NArg() > 0 {
		t.Errorf("%s: %s takes no arguments, given %q", where, svc, fs.Args())
	}
}

// checkEnv reports an environment variable a service would not read: a
// JETSAGA_* or connection variable must be one of its flags' (EnvName);
// besides those only the standard PG*, OTEL_* and Go runtime ones make sense.
func checkEnv(t *testing.T, where, svc string, env map[string]string) {
	t.Helper()
	known := map[string]*flag.Flag{}
	binaryFlags(t, svc).VisitAll(func(f *flag.Flag) { known[service.EnvName(f.Name)] = f })
	for name, value := range env {
		f, ok := known[name]
		switch {
		case ok:
			// A value with a shell-style reference is filled in by the
			// runner (systemd's %d); the rest must parse.
			if !strings.ContainsAny(value, "%$<") && value != "" {
				if err := f.Value.Set(value); err != nil {
					t.Errorf("%s: %s: %s=%q: %v", where, svc, name, value, err)
				}
			}
		case strings.HasPrefix(name, "JETSAGA_"), name == "NATS_URL", name == "DATABASE_URL":
			t.Errorf("%s: %s reads no %s", where, svc, name)
		case strings.HasPrefix(name, "PG"), strings.HasPrefix(name, "OTEL_"), name == "GOMAXPROCS", name == "GOMEMLIMIT", name == "POD_NAME":
		default:
			t.Errorf("%s: %s: unexpected variable %s", where, svc, name)
		}
	}
	for _, need := range []string{"NATS_URL", "JETSAGA_NATS_NKEY_SEED"} {
		if _, ok := env[need]; !ok {
			t.Errorf("%s: %s: %s is not set", where, svc, need)
		}
	}
}

// unit is a systemd unit or environment file, as key → values per section.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.TrimSpace(k) == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not key=value: %q", path, n, line)
			}
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// Every service has a unit that restarts it, hardens it, hands it its
// credentials as files and runs its binary with flags and variables it
// takes; nats-server has one too.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	for _, svc := range services {
		path := filepath.Join("systemd", "jetsaga-"+svc+".service")
		u := readUnit(t, path)
		s := u["Service"]
		if s == nil || u["Unit"] == nil || u["Install"] == nil {
			t.Fatalf("%s: want [Unit], [Service] and [Install]", path)
		}
		for k, want := range map[string]string{
			"Restart": "always", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"DynamicUser": "yes", "PrivateTmp": "yes", "KillSignal": "SIGTERM",
		} {
			if !slices.Contains(s[k], want) {
				t.Errorf("%s: %s=%v, want %s", path, k, s[k], want)
			}
		}
		if len(s["ExecStart"]) != 1 {
			t.Fatalf("%s: ExecStart %q", path, s["ExecStart"])
		}
		cmd := strings.Fields(s["ExecStart"][0])
		if filepath.Base(cmd[0]) != svc {
			t.Errorf("%s: runs %s, want the %s binary", path, cmd[0], svc)
		}
		checkArgs(t, path, svc, cmd[1:])
		env := map[string]string{}
		for _, e := range s["Environment"] {
			k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
			env[k] = v
		}
		for _, ef := range s["EnvironmentFile"] {
			local := filepath.Join("systemd", filepath.Base(strings.TrimPrefix(ef, "-")))
			for k, vs := range readUnit(t, local)[""] {
				env[k] = vs[len(vs)-1]
			}
		}
		checkEnv(t, path, svc, env)
		if !strings.HasPrefix(env["JETSAGA_NATS_NKEY_SEED"], "%d/") {
			t.Errorf("%s: the nkey seed should come from LoadCredential (%%d/…), is %q", path, env["JETSAGA_NATS_NKEY_SEED"])
		}
	}
	u := readUnit(t, filepath.Join("systemd", "nats-server.service"))
	if cmd := strings.Fields(strings.Join(u["Service"]["ExecStart"], " ")); len(cmd) == 0 || filepath.Base(cmd[0]) != "nats-server" {
		t.Errorf("nats-server.service: ExecStart %q", u["Service"]["ExecStart"])
	}
}

// yamlDocs reads every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				return docs
			}
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a YAML tree by keys (maps) and indexes (lists).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// The compose file runs three nats-servers from deploy/nats/cluster, a
// provision job, and two instances of every service with flags and
// variables it takes, its credentials as secrets that exist.
func TestCompose(t *testing.T) {
	t.Parallel()
	path := filepath.Join("compose", "compose.yaml")
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents", path, len(docs))
	}
	c := docs[0]
	secrets, _ := c["secrets"].(map[string]any)
	for name, s := range secrets {
		file := fmt.Sprint(get(s, "file"))
		if strings.Contains(file, "/secrets/") {
			continue // made by the operator, git-ignored
		}
		if _, err := os.Stat(filepath.Join("compose", file)); err != nil {
			t.Errorf("%s: secret %s: %v", path, name, err)
		}
	}
	for i := 1; i <= 3; i++ {
		cmd := strs(get(c, "services", fmt.Sprintf("nats-%d", i), "command"))
		conf := fmt.Sprintf("/etc/nats/cluster/node%d.conf", i)
		if !slices.Contains(cmd, conf) {
			t.Errorf("%s: nats-%d does not run %s: %q", path, i, conf, cmd)
		}
	}
	if cmd := strs(get(c, "services", "provision", "command")); !slices.Contains(cmd, "provision") {
		t.Errorf("%s: provision runs %q", path, cmd)
	}
	for _, svc := range services {
		s := get(c, "services", svc)
		if s == nil {
			t.Errorf("%s: no service %s", path, svc)
			continue
		}
		if n := get(s, "deploy", "replicas"); n != 2 {
			t.Errorf("%s: %s: %v replicas, want 2", path, svc, n)
		}
		cmd := strs(get(s, "command"))
		if len(cmd) == 0 || filepath.Base(cmd[0]) != svc {
			t.Errorf("%s: %s runs %q", path, svc, cmd)
			continue
		}
		checkArgs(t, path, svc, cmd[1:])
		env := map[string]string{}
		for k, v := range get(s, "environment").(map[string]any) {
			env[k] = fmt.Sprint(v)
		}
		checkEnv(t, path, svc, env)
		for _, sec := range strs(get(s, "secrets")) {
			if _, ok := secrets[sec]; !ok {
				t.Errorf("%s: %s uses secret %s, not defined", path, svc, sec)
			}
		}
		if !strings.HasPrefix(env["JETSAGA_NATS_NKEY_SEED"], "/run/secrets/") {
			t.Errorf("%s: %s: the nkey seed is not a secret: %q", path, svc, env["JETSAGA_NATS_NKEY_SEED"])
		}
	}
}

// The Kubernetes manifests: NATS as a 3-replica StatefulSet; per service a
// Deployment of two replicas, probes on /healthz and /readyz, a grace
// period for the drain, flags and variables its binary takes, credentials
// from Secrets that secrets.example.yaml lists.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	objects := map[string]map[string]any{} // kind/name → object
	for _, f := range []string{"namespace.yaml", "nats.yaml", "jetsaga.yaml", "secrets.example.yaml"} {
		for _, d := range yamlDocs(t, filepath.Join("k8s", f)) {
			kind, name := fmt.Sprint(d["kind"]), fmt.Sprint(get(d, "metadata", "name"))
			if d["apiVersion"] == nil || kind == "" || name == "" {
				t.Errorf("k8s/%s: an object without apiVersion, kind or name", f)
			}
			if ns := get(d, "metadata", "namespace"); kind != "Namespace" && ns != "jetsaga" {
				t.Errorf("k8s/%s: %s/%s in namespace %v", f, kind, name, ns)
			}
			objects[kind+"/"+name] = d
		}
	}
	if n := get(objects["StatefulSet/nats"], "spec", "replicas"); n != 3 {
		t.Errorf("StatefulSet nats: %v replicas, want 3", n)
	}
	if _, ok := objects["Job/jetsaga-provision"]; !ok {
		t.Error("no Job jetsaga-provision")
	}
	for _, svc := range services {
		d := objects["Deployment/jetsaga-"+svc]
		if d == nil {
			t.Errorf("no Deployment jetsaga-%s", svc)
			continue
		}
		where := "Deployment/jetsaga-" + svc
		if n := get(d, "spec", "replicas"); n != 2 {
			t.Errorf("%s: %v replicas, want 2", where, n)
		}
		pod := get(d, "spec", "template", "spec")
		if g, _ := get(pod, "terminationGracePeriodSeconds").(int); g < 30 {
			t.Errorf("%s: terminationGracePeriodSeconds %d: the drain needs 30s", where, g)
		}
		ctr := get(pod, "containers", 0)
		cmd := strs(get(ctr, "command"))
		if len(cmd) != 1 || filepath.Base(cmd[0]) != svc {
			t.Errorf("%s: command %q", where, cmd)
		}
		checkArgs(t, where, svc, strs(get(ctr, "args")))
		if p := get(ctr, "readinessProbe", "httpGet", "path"); p != "/readyz" {
			t.Errorf("%s: readiness probe on %v", where, p)
		}
		if p := get(ctr, "livenessProbe", "httpGet", "path"); p != "/healthz" {
			t.Errorf("%s: liveness probe on %v", where, p)
		}
		env := map[string]string{}
		for _, e := range get(ctr, "env").([]any) {
			name := fmt.Sprint(get(e, "name"))
			env[name] = fmt.Sprint(get(e, "value"))
			if ref := get(e, "valueFrom", "secretKeyRef", "name"); ref != nil {
				env[name] = "<secret>"
				checkSecret(t, objects, where, fmt.Sprint(ref), fmt.Sprint(get(e, "valueFrom", "secretKeyRef", "key")))
			}
		}
		checkEnv(t, where, svc, env)
		for _, v := range get(pod, "volumes").([]any) {
			if name := get(v, "secret", "secretName"); name != nil {
				for _, it := range get(v, "secret", "items").([]any) {
					checkSecret(t, objects, where, fmt.Sprint(name), fmt.Sprint(get(it, "key")))
				}
			}
		}
	}
}

func checkSecret(t *testing.T, objects map[string]map[string]any, where, name, key string) {
	t.Helper()
	s := objects["Secret/"+name]
	if s == nil {
		t.Errorf("%s: uses Secret %s, which secrets.example.yaml does not list", where, name)
		return
	}
	if get(s, "stringData", key) == nil {
		t.Errorf("%s: uses key %s of Secret %s, which it does not hold", where, key, name)
	}
}
