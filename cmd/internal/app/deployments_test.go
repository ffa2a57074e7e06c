// The deployment files (deployments/, docker-compose.yml) cannot run here:
// no Docker engine or cluster runs where the tests do. These tests read
// them against the code instead: binaries, ports, and every environment
// variable they set must be one the services read.
package app_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/taskchat/taskchat/cmd/internal/app"
)

// repoRoot is the repository, seen from this package.
const repoRoot = "../../.."

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Ports   []struct {
		ContainerPort int `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

type manifest struct {
	Kind     string            `yaml:"kind"`
	Data     map[string]string `yaml:"data"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// binaries are the commands the image ships (every directory under cmd/
// with a main package).
func binaries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(repoRoot + "/cmd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(repoRoot, "cmd", e.Name(), "main.go")); err == nil {
			out = append(out, "/usr/local/bin/"+e.Name())
		}
	}
	return out
}

func readManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(repoRoot + "/deployments/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var m manifest
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, m)
		}
	}
	return out
}

func TestKubernetesManifestsMatchTheCode(t *testing.T) {
	known := app.Variables()
	bins := binaries(t)
	var containers int
	for _, m := range readManifests(t) {
		if m.Kind == "ConfigMap" {
			for k := range m.Data {
				if !slices.Contains(known, k) {
					t.Errorf("ConfigMap %s sets %s, which the services do not read", m.Metadata.Name, k)
				}
			}
			if addr := m.Data["HTTP_ADDR"]; addr != "" && addr != ":8080" {
				t.Errorf("ConfigMap HTTP_ADDR = %q; the probes and Service use 8080", addr)
			}
		}
		for _, c := range m.Spec.Template.Spec.Containers {
			containers++
			if c.Image != "taskchat" {
				t.Errorf("%s/%s: image %q, want the kustomize-managed name taskchat", m.Metadata.Name, c.Name, c.Image)
			}
			if len(c.Command) == 0 || !slices.Contains(bins, c.Command[0]) {
				t.Errorf("%s/%s: command %v is not one of the image's binaries %v", m.Metadata.Name, c.Name, c.Command, bins)
			}
			for _, e := range c.Env {
				if !slices.Contains(known, e.Name) {
					t.Errorf("%s/%s sets %s, which the services do not read", m.Metadata.Name, c.Name, e.Name)
				}
			}
			for _, p := range c.Ports {
				// The API listens on 8080 (HTTP_ADDR); a worker's probes on
				// its WORKER_HTTP_ADDR.
				want := 8080
				for _, e := range c.Env {
					if e.Name == "WORKER_HTTP_ADDR" {
						want = 9090
						if e.Value != ":9090" {
							t.Errorf("%s/%s: WORKER_HTTP_ADDR %q, the probes use 9090", m.Metadata.Name, c.Name, e.Value)
						}
					}
				}
				if p.ContainerPort != want {
					t.Errorf("%s/%s: containerPort %d, want %d", m.Metadata.Name, c.Name, p.ContainerPort, want)
				}
			}
		}
	}
	if containers == 0 {
		t.Fatal("no containers found in the manifests")
	}
}

func TestComposeMatchesTheCode(t *testing.T) {
	b, err := os.ReadFile(repoRoot + "/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	known := app.Variables()
	bins := binaries(t)
	var ours int
	for name, s := range compose.Services {
		// A developer's stack with well-known passwords and secrets: nothing
		// may be reachable from other hosts.
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q beyond the host's loopback", name, p)
			}
		}
		if !strings.HasPrefix(s.Image, "taskchat") {
			continue
		}
		ours++
		if len(s.Entrypoint) == 0 || !slices.Contains(bins, s.Entrypoint[0]) {
			t.Errorf("service %s: entrypoint %v is not one of the image's binaries %v", name, s.Entrypoint, bins)
		}
		for k := range s.Environment {
			if !slices.Contains(known, k) {
				t.Errorf("service %s sets %s, which the services do not read", name, k)
			}
		}
		if s.Environment["DATABASE_URL"] == "" {
			t.Errorf("service %s has no DATABASE_URL", name)
		}
		// The services refuse the published secret outside development mode.
		if server := len(s.Ports) > 0; server && strings.Contains(s.Environment["BETTER_AUTH_SECRET"], app.DevSecret) && s.Environment["DEV_MODE"] != "true" {
			t.Errorf("service %s defaults to the development secret without DEV_MODE=true", name)
		}
	}
	if ours == 0 {
		t.Fatal("no taskchat services in docker-compose.yml")
	}
}

// TestMakefileRunsInDevelopmentMode: make run starts chatd in development
// mode without a secret of the Makefile's (chatd then generates its own
// under DATA_DIR), and make token signs with that same file.
func TestMakefileRunsInDevelopmentMode(t *testing.T) {
	b, err := os.ReadFile(repoRoot + "/Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	if regexp.MustCompile(`(?m)^BETTER_AUTH_SECRET\s*\??=`).MatchString(mk) || strings.Contains(mk, app.DevSecret) {
		t.Fatalf("the Makefile sets a BETTER_AUTH_SECRET: chatd would not generate its own")
	}
	if !strings.Contains(mk, "DEV_MODE=true $(GO) run ./cmd/chatd") {
		t.Fatalf("make run does not start chatd in development mode")
	}
	if !strings.Contains(mk, "$(DATA_DIR)/"+app.DevSecretFile) {
		t.Fatalf("make token does not read the secret chatd generates ($(DATA_DIR)/%s)", app.DevSecretFile)
	}
}
