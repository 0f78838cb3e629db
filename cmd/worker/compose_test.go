package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/odinreset/odinreset/internal/secrets"
)

// The compose file and the Dockerfile cannot be run here: CI machines have no Docker
// engine. These tests parse them and check what a broken deployment would get wrong.

// repoRoot is the module root, two levels above this package.
var repoRoot = filepath.Join("..", "..")

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File        string `yaml:"file"`
		Environment string `yaml:"environment"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           any               `yaml:"build"`
	Profiles        []string          `yaml:"profiles"`
	User            string            `yaml:"user"`
	Entrypoint      stringOrList      `yaml:"entrypoint"`
	Command         stringOrList      `yaml:"command"`
	Environment     environment       `yaml:"environment"`
	EnvFile         []envFileEntry    `yaml:"env_file"`
	Secrets         []string          `yaml:"secrets"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	DependsOn       map[string]depend `yaml:"depends_on"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test stringOrList `yaml:"test"`
	} `yaml:"healthcheck"`
}

type depend struct {
	Condition string `yaml:"condition"`
	Required  *bool  `yaml:"required"`
}

// stringOrList is a compose value given as one string or a list of strings.
type stringOrList []string

func (s *stringOrList) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*s = []string{node.Value}
		return nil
	}
	var list []string
	if err := node.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}

// environment is a compose environment given as a mapping or as a list of KEY=VALUE.
type environment map[string]string

func (e *environment) UnmarshalYAML(node *yaml.Node) error {
	*e = environment{}
	if node.Kind == yaml.MappingNode {
		var m map[string]string
		if err := node.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*e)[k] = v
		}
		return nil
	}
	var list []string
	if err := node.Decode(&list); err != nil {
		return err
	}
	for _, item := range list {
		k, v, _ := strings.Cut(item, "=")
		(*e)[k] = v
	}
	return nil
}

// envFileEntry is one env_file entry: a path, or a mapping with path and required.
type envFileEntry struct {
	Path string
}

func (f *envFileEntry) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		f.Path = node.Value
		return nil
	}
	var m struct {
		Path string `yaml:"path"`
	}
	if err := node.Decode(&m); err != nil {
		return err
	}
	f.Path = m.Path
	return nil
}

var interpolation = regexp.MustCompile(`\$\{([A-Z0-9_]+)(:-([^}]*))?\}`)

// interpolate applies compose's variable substitution as an empty shell environment
// would: ${NAME:-default} becomes default, ${NAME} becomes "", and $$ becomes $.
func interpolate(s string) string {
	s = strings.ReplaceAll(s, "$$", "\x00")
	s = interpolation.ReplaceAllString(s, "$3")
	return strings.ReplaceAll(s, "\x00", "$")
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("read docker-compose.yml: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML for compose: %v", err)
	}
	return c
}

// readEnvFile parses a compose env file: KEY=VALUE lines, blank lines and # comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatalf("open env file: %v", err)
	}
	defer f.Close()
	env := map[string]string{}
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s:%d: %q is not KEY=VALUE", path, n, line)
			continue
		}
		env[k] = v
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return env
}

// serviceEnv returns the environment compose gives a service: its env files, then its
// environment entries, which win.
func serviceEnv(t *testing.T, s composeService) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, f := range s.EnvFile {
		for k, v := range readEnvFile(t, f.Path) {
			env[k] = v
		}
	}
	for k, v := range s.Environment {
		env[k] = interpolate(v)
	}
	return env
}

func TestComposeServicesAndProfiles(t *testing.T) {
	c := loadCompose(t)

	tests := []struct {
		service      string
		wantProfiles []string
		wantHealth   bool
	}{
		{service: "redis", wantProfiles: nil, wantHealth: true},
		{service: "worker", wantProfiles: nil, wantHealth: true},
		{service: "odin-sim", wantProfiles: []string{"demo"}, wantHealth: true},
		{service: "enqueue", wantProfiles: []string{"tools"}, wantHealth: false},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			s, ok := c.Services[tt.service]
			if !ok {
				t.Fatalf("service %s is missing", tt.service)
			}
			if diff := cmp.Diff(tt.wantProfiles, s.Profiles); diff != "" {
				t.Errorf("profiles of %s (-want +got):\n%s", tt.service, diff)
			}
			if tt.wantHealth && (s.Healthcheck == nil || len(s.Healthcheck.Test) == 0) {
				t.Errorf("service %s has no healthcheck", tt.service)
			}
			if s.User != "" {
				t.Errorf("service %s sets user %q; the image's unprivileged user must stay", tt.service, s.User)
			}
			for _, port := range s.Ports {
				if !strings.HasPrefix(port, "127.0.0.1:") {
					t.Errorf("service %s publishes %q on every interface; bind it to 127.0.0.1", tt.service, port)
				}
			}
		})
	}

	t.Run("dependencies", func(t *testing.T) {
		worker := c.Services["worker"]
		if got := worker.DependsOn["redis"].Condition; got != "service_healthy" {
			t.Errorf("worker depends on redis with condition %q, want service_healthy", got)
		}
		// A required dependency on a service of the demo profile would stop the worker
		// from starting without that profile.
		sim := worker.DependsOn["odin-sim"]
		if sim.Required == nil || *sim.Required {
			t.Errorf("worker's dependency on odin-sim must set required: false")
		}
	})
}

func TestComposeRedisSettings(t *testing.T) {
	redis := loadCompose(t).Services["redis"]

	if !regexp.MustCompile(`^redis:7(\.|-|$)`).MatchString(redis.Image) {
		t.Errorf("redis image = %q, want Redis 7 (redis:7...)", redis.Image)
	}
	command := make([]string, len(redis.Command))
	for i, arg := range redis.Command {
		command[i] = interpolate(arg)
	}
	tests := []struct {
		flag string
		want string
	}{
		{flag: "--appendonly", want: "yes"},
		{flag: "--maxmemory-policy", want: "noeviction"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			i := slices.Index(command, tt.flag)
			if i < 0 || i+1 >= len(command) {
				t.Fatalf("redis command %q has no %s", command, tt.flag)
			}
			if command[i+1] != tt.want {
				t.Errorf("redis %s = %q, want %q", tt.flag, command[i+1], tt.want)
			}
		})
	}
	if !slices.ContainsFunc(redis.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		t.Errorf("redis volumes %q do not keep /data, where the append-only file lives", redis.Volumes)
	}
}

// secretName matches environment variable names that carry secrets.
var secretName = regexp.MustCompile(`PASSWORD|KEY|TOKEN|SECRET`)

func TestComposeSecretsNotInline(t *testing.T) {
	c := loadCompose(t)

	for name, secret := range c.Secrets {
		if secret.Environment != "" {
			t.Errorf("secret %s comes from the environment variable %s; use a file under deploy/secrets/", name, secret.Environment)
		}
		if !strings.HasPrefix(secret.File, "./deploy/secrets/") {
			t.Errorf("secret %s is read from %q, want a file under ./deploy/secrets/", name, secret.File)
		}
	}

	for serviceName, s := range c.Services {
		t.Run(serviceName, func(t *testing.T) {
			for _, ref := range s.Secrets {
				if _, ok := c.Secrets[ref]; !ok {
					t.Errorf("service %s uses secret %s, which the top-level secrets do not define", serviceName, ref)
				}
			}
			for name, value := range serviceEnv(t, s) {
				if strings.Contains(value, "://") && strings.Contains(value, "@") {
					t.Errorf("%s=%q in service %s carries credentials in a URL", name, value, serviceName)
				}
				if !secretName.MatchString(name) {
					continue
				}
				if !strings.HasSuffix(name, "_FILE") {
					t.Errorf("service %s gets %s inline; pass %s_FILE with a compose secret", serviceName, name, name)
					continue
				}
				secret, ok := strings.CutPrefix(value, "/run/secrets/")
				if !ok || !slices.Contains(s.Secrets, secret) {
					t.Errorf("service %s: %s=%q is not one of its compose secrets %q under /run/secrets/", serviceName, name, value, s.Secrets)
				}
			}
		})
	}

	t.Run("secret files stay out of git and the image", func(t *testing.T) {
		gitignore, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "secrets", ".gitignore"))
		if err != nil {
			t.Fatalf("read deploy/secrets/.gitignore: %v", err)
		}
		var rules []string
		for _, line := range strings.Split(string(gitignore), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				rules = append(rules, line)
			}
		}
		if diff := cmp.Diff([]string{"*", "!.gitignore", "!README.md"}, rules); diff != "" {
			t.Errorf("deploy/secrets/.gitignore rules (-want +got):\n%s", diff)
		}

		dockerignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
		if err != nil {
			t.Fatalf("read .dockerignore: %v", err)
		}
		if !slices.Contains(strings.Split(string(dockerignore), "\n"), "deploy") {
			t.Errorf(".dockerignore does not exclude deploy, so secret files would enter the build context")
		}
	})
}

func TestComposeWorkerEnvironment(t *testing.T) {
	worker := loadCompose(t).Services["worker"]
	env := serviceEnv(t, worker)

	// Record every variable the worker's configuration reads.
	read := map[string]bool{}
	dir := t.TempDir()
	fileValues := map[string]string{
		"/run/secrets/odin_password":       "odin-password",
		"/run/secrets/monitoring_password": "monitoring-password",
		"/run/secrets/results_key":         "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	}
	getenv := func(name string) string {
		read[name] = true
		value := env[name]
		if content, ok := fileValues[value]; ok {
			// Point the *_FILE variables at local copies of the compose secrets.
			path := filepath.Join(dir, filepath.Base(value))
			if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		return value
	}

	cfg, err := parseConfig(nil, getenv, &strings.Builder{})
	if err != nil {
		t.Fatalf("the worker rejects the compose environment: %v", err)
	}
	if _, err := secrets.Sealer(getenv, cfg.InsecurePlaintextResults); err != nil {
		t.Fatalf("the worker rejects the compose results key: %v", err)
	}

	t.Run("every variable is read", func(t *testing.T) {
		var unknown []string
		for name := range env {
			if !read[name] {
				unknown = append(unknown, name)
			}
		}
		slices.Sort(unknown)
		if diff := cmp.Diff([]string(nil), unknown); diff != "" {
			t.Errorf("variables the compose file passes that cmd/worker never reads (-want +got):\n%s", diff)
		}
	})

	t.Run("HTTP reachable from other containers", func(t *testing.T) {
		host, port, _ := strings.Cut(cfg.HTTPAddr, ":")
		if host != "" && host != "0.0.0.0" {
			t.Errorf("HTTP_ADDR %q listens on %q only; use :PORT so the health check and other containers reach it", cfg.HTTPAddr, host)
		}
		health := strings.Join(worker.Healthcheck.Test, " ")
		if !strings.Contains(health, "127.0.0.1:"+port+"/readyz") {
			t.Errorf("worker healthcheck %q does not request /readyz on port %s", health, port)
		}
		if !slices.ContainsFunc(worker.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
			t.Errorf("worker ports %q do not publish container port %s", worker.Ports, port)
		}
	})

	t.Run("dashboard on", func(t *testing.T) {
		if cfg.MonitoringUser == "" || cfg.monitoringPassword == "" {
			t.Errorf("the compose worker has no dashboard login: set MONITORING_USER and the monitoring_password secret")
		}
	})

	t.Run("stop grace period covers shutdown", func(t *testing.T) {
		grace, err := time.ParseDuration(worker.StopGracePeriod)
		if err != nil {
			t.Fatalf("worker stop_grace_period %q: %v", worker.StopGracePeriod, err)
		}
		if grace <= cfg.ShutdownTimeout {
			t.Errorf("stop_grace_period %s is not longer than SHUTDOWN_TIMEOUT %s: Docker would kill running tasks", grace, cfg.ShutdownTimeout)
		}
	})
}

// TestComposeToolEnvironment checks the variables of the other programs against their
// sources, because their configuration code is in other packages.
func TestComposeToolEnvironment(t *testing.T) {
	c := loadCompose(t)

	tests := []struct {
		service string
		sources []string // folders whose Go files must name each variable
	}{
		{service: "enqueue", sources: []string{"cmd/enqueue", "internal/secrets"}},
		{service: "odin-sim", sources: []string{"cmd/odin-sim"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			var source strings.Builder
			for _, dir := range tt.sources {
				files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
				if err != nil || len(files) == 0 {
					t.Fatalf("no Go files in %s (%v)", dir, err)
				}
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					source.Write(b)
				}
			}

			s := c.Services[tt.service]
			names := map[string]bool{}
			for name := range serviceEnv(t, s) {
				names[name] = true
			}
			// Variables the odin-sim shell command sets, like ODIN_SIM_PASSWORD=...
			for _, word := range strings.Fields(strings.Join(s.Command, " ")) {
				if name, _, ok := strings.Cut(word, "="); ok && regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(name) {
					names[name] = true
				}
			}
			// SIM_USERS only carries a value into the odin-sim command line.
			delete(names, "SIM_USERS")

			for name := range names {
				// FromEnvOrFile reads NAME and NAME_FILE from the one literal "NAME".
				literal := fmt.Sprintf("%q", strings.TrimSuffix(name, "_FILE"))
				if !strings.Contains(source.String(), literal) {
					t.Errorf("service %s gets %s, but %v never names %s", tt.service, name, tt.sources, literal)
				}
			}

			// Every --flag of the command must be one the program defines.
			for _, flag := range regexp.MustCompile(`--([a-z][a-z-]*)`).FindAllStringSubmatch(strings.Join(s.Command, " "), -1) {
				if !strings.Contains(source.String(), fmt.Sprintf("%q", flag[1])) {
					t.Errorf("service %s passes --%s, which %v do not define", tt.service, flag[1], tt.sources)
				}
			}
		})
	}
}

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}

	// Join continuation lines, then split the stages at each FROM.
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	var stages [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[len(stages)-1]

	t.Run("static binaries", func(t *testing.T) {
		if !strings.Contains(build, "CGO_ENABLED=0") {
			t.Errorf("the build stage does not set CGO_ENABLED=0, so the binaries may need libc")
		}
		for _, cmd := range []string{"./cmd/worker", "./cmd/enqueue", "./cmd/odin-sim"} {
			if !strings.Contains(build, cmd) {
				t.Errorf("the build stage does not build %s, which the compose file runs", cmd)
			}
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		user := ""
		for _, line := range final {
			if v, ok := strings.CutPrefix(line, "USER "); ok {
				user = strings.TrimSpace(v)
			}
		}
		name, _, _ := strings.Cut(user, ":")
		if name == "" || name == "root" || name == "0" {
			t.Errorf("the runtime stage runs as %q, want an unprivileged USER", user)
		}
	})

	t.Run("worker entry point", func(t *testing.T) {
		if !slices.ContainsFunc(final, func(line string) bool {
			return strings.HasPrefix(line, "ENTRYPOINT") && strings.Contains(line, "worker")
		}) {
			t.Errorf("the runtime stage's ENTRYPOINT is not the worker: %q", final)
		}
	})

	t.Run("health check tool", func(t *testing.T) {
		// The compose health checks run wget inside the image; scratch and distroless
		// images have none.
		if !strings.Contains(final[0], "alpine") && !strings.Contains(final[0], "busybox") {
			t.Errorf("runtime base %q may lack the wget the compose health checks run", final[0])
		}
	})
}
