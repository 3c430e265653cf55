// k8svalidate checks rendered Kubernetes manifests (the output of `helm template`) strictly against the
// API types of Kubernetes (k8s.io/api) and the Prometheus Operator (monitoring.coreos.com/v1): every
// document must be a known kind, and a field the type does not have, a duplicate field or a wrong type
// is an error. It then checks the rules the chart promises (restricted pod security, selectors that
// match their pods, names Kubernetes accepts) and can write every ConfigMap's files out, so the
// services' own --check-config can judge the rendered config.
//
// Strimzi KafkaTopic documents are left to the Strimzi validator (tests/deploy/strimzi), which uses
// Strimzi's own API classes; this program only counts them.
//
//	k8svalidate [-configs DIR] FILE...
//
// Exit 0 when every document is valid, 1 with one line per problem otherwise, 2 on bad usage.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// newObject returns an empty typed object for an apiVersion/kind, or nil when the kind is not known.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

type checker struct {
	problems   []string
	configDir  string
	counts     map[string]int
	strimziDoc int
}

func (c *checker) fail(where, format string, args ...any) {
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

func (c *checker) checkMeta(where string, m *metav1.ObjectMeta, kind string) {
	if m.Name == "" {
		c.fail(where, "metadata.name is empty")
	}
	nameErrs := validation.IsDNS1123Subdomain(m.Name)
	if kind == "Service" {
		nameErrs = validation.IsDNS1035Label(m.Name)
	}
	for _, e := range nameErrs {
		c.fail(where, "metadata.name %q: %s", m.Name, e)
	}
	c.checkLabels(where+" metadata.labels", m.Labels)
}

func (c *checker) checkLabels(where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			c.fail(where, "label key %q: %s", k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			c.fail(where, "label %q value %q: %s", k, v, e)
		}
	}
}

func (c *checker) checkSelector(where string, sel *metav1.LabelSelector, podLabels map[string]string) {
	if sel == nil {
		c.fail(where, "spec.selector is missing")
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.fail(where, "spec.selector: %v", err)
		return
	}
	if podLabels != nil && !s.Matches(labels.Set(podLabels)) {
		c.fail(where, "spec.selector %s does not match the pod template's labels %v", s, podLabels)
	}
}

// checkPod enforces what the chart promises for every pod: the "restricted" Pod Security Standard and
// a read-only root file system, probes on a named port, resource requests.
func (c *checker) checkPod(where string, spec *corev1.PodSpec, podLabels map[string]string) {
	c.checkLabels(where+" template labels", podLabels)
	psc := spec.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		c.fail(where, "pod securityContext.runAsUser is 0 (root)")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		c.fail(where, "pod uses host namespaces")
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	if len(spec.Containers) == 0 {
		c.fail(where, "pod has no containers")
	}
	for _, ct := range all {
		w := fmt.Sprintf("%s container %q", where, ct.Name)
		sc := ct.SecurityContext
		if sc == nil {
			c.fail(w, "no securityContext")
			continue
		}
		if !(podNonRoot || (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)) {
			c.fail(w, "runAsNonRoot is not true")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			c.fail(w, "readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			c.fail(w, "allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			c.fail(w, "privileged")
		}
		dropAll := false
		if sc.Capabilities != nil {
			for _, d := range sc.Capabilities.Drop {
				if d == "ALL" {
					dropAll = true
				}
			}
			if len(sc.Capabilities.Add) > 0 {
				c.fail(w, "adds capabilities %v", sc.Capabilities.Add)
			}
		}
		if !dropAll {
			c.fail(w, "capabilities.drop does not contain ALL")
		}
		ctSeccomp := sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
		if !podSeccomp && !ctSeccomp {
			c.fail(w, "seccompProfile is not RuntimeDefault")
		}
		if ct.Image == "" {
			c.fail(w, "no image")
		}
		if ct.Resources.Requests == nil {
			c.fail(w, "no resource requests")
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			ports[p.Name] = true
		}
		for name, probe := range map[string]*corev1.Probe{"liveness": ct.LivenessProbe, "readiness": ct.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				c.fail(w, "no HTTP %s probe", name)
				continue
			}
			if probe.HTTPGet.Port.StrVal != "" && !ports[probe.HTTPGet.Port.StrVal] {
				c.fail(w, "%s probe names port %q, which the container does not have", name, probe.HTTPGet.Port.StrVal)
			}
		}
		mounts := map[string]bool{}
		for _, m := range ct.VolumeMounts {
			mounts[m.Name] = true
		}
		for _, v := range spec.Volumes {
			if !mounts[v.Name] {
				c.fail(w, "volume %q is mounted by no container", v.Name)
			}
		}
	}
}

func (c *checker) extractConfigs(cm *corev1.ConfigMap) error {
	if c.configDir == "" {
		return nil
	}
	dir := filepath.Join(c.configDir, cm.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for key, val := range cm.Data {
		if strings.ContainsAny(key, "/\\") || key == ".." || key == "." {
			return fmt.Errorf("ConfigMap %s: key %q is not a file name", cm.Name, key)
		}
		if err := os.WriteFile(filepath.Join(dir, key), []byte(val), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) checkDoc(where string, doc []byte) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		c.fail(where, "not a Kubernetes object: %v", err)
		return
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		c.fail(where, "apiVersion or kind missing")
		return
	}
	where = fmt.Sprintf("%s (%s %s)", where, tm.APIVersion, tm.Kind)
	if tm.APIVersion == "kafka.strimzi.io/v1beta2" && tm.Kind == "KafkaTopic" {
		c.strimziDoc++
		c.counts[tm.Kind]++
		return
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		c.fail(where, "unknown apiVersion/kind: add its API type to k8svalidate or fix the template")
		return
	}
	// UnmarshalStrict: unknown fields and duplicate fields are errors.
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		c.fail(where, "%v", err)
		return
	}
	c.counts[tm.Kind]++
	switch o := obj.(type) {
	case *appsv1.Deployment:
		where += " " + o.Name
		c.checkMeta(where, &o.ObjectMeta, tm.Kind)
		c.checkSelector(where, o.Spec.Selector, o.Spec.Template.Labels)
		c.checkPod(where, &o.Spec.Template.Spec, o.Spec.Template.Labels)
	case *appsv1.StatefulSet:
		where += " " + o.Name
		c.checkMeta(where, &o.ObjectMeta, tm.Kind)
		c.checkSelector(where, o.Spec.Selector, o.Spec.Template.Labels)
		c.checkPod(where, &o.Spec.Template.Spec, o.Spec.Template.Labels)
		if o.Spec.ServiceName == "" {
			c.fail(where, "spec.serviceName is empty")
		}
	case *corev1.ConfigMap:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
		if err := c.extractConfigs(o); err != nil {
			c.fail(where, "%v", err)
		}
	case *policyv1.PodDisruptionBudget:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
		c.checkSelector(where+" "+o.Name, o.Spec.Selector, nil)
	case *networkingv1.NetworkPolicy:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
		hasEgress := false
		for _, t := range o.Spec.PolicyTypes {
			if t == networkingv1.PolicyTypeEgress {
				hasEgress = true
			}
		}
		if !hasEgress {
			c.fail(where+" "+o.Name, "policyTypes lacks Egress: egress would be unrestricted")
		}
		for i, r := range o.Spec.Egress {
			if len(r.To) == 0 {
				c.fail(where+" "+o.Name, "egress rule %d has no 'to': it allows every destination", i)
			}
		}
	case *corev1.Service:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
	case *corev1.ServiceAccount:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
	case *rbacv1.Role:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
	case *rbacv1.RoleBinding:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
	case *monitoringv1.ServiceMonitor:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
	case *monitoringv1.PrometheusRule:
		c.checkMeta(where+" "+o.Name, &o.ObjectMeta, tm.Kind)
		for _, g := range o.Spec.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" && r.Record == "" {
					c.fail(where+" "+o.Name, "group %q has a rule with neither alert nor record", g.Name)
				}
				if r.Expr.String() == "" {
					c.fail(where+" "+o.Name, "rule %q has no expr", r.Alert+r.Record)
				}
			}
		}
	}
}

func (c *checker) checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", path, n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		c.checkDoc(fmt.Sprintf("%s: document %d", path, n), doc)
	}
}

// stripComments drops comment-only lines (helm template prefixes every document with "# Source: ...").
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func main() {
	configDir := flag.String("configs", "", "write every ConfigMap's files to DIR/<configmap name>/<key>")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: k8svalidate [-configs DIR] MANIFEST.yaml...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	c := &checker{configDir: *configDir, counts: map[string]int{}}
	for _, path := range flag.Args() {
		if err := c.checkFile(path); err != nil {
			c.problems = append(c.problems, err.Error())
		}
	}
	for _, p := range c.problems {
		fmt.Println("INVALID", p)
	}
	var kinds []string
	for k, n := range c.counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	if len(c.problems) > 0 {
		fmt.Printf("k8svalidate: %d problem(s)\n", len(c.problems))
		os.Exit(1)
	}
	fmt.Printf("k8svalidate: ok (%s; KafkaTopic left to the Strimzi validator)\n", strings.Join(sortStrings(kinds), " "))
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
