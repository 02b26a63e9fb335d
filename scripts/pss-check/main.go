// pss-check evaluates the pod templates in Kubernetes manifests against a Pod Security Standard level
// with k8s.io/pod-security-admission: the checks the API server's PodSecurity admission runs when a
// namespace has pod-security.kubernetes.io/enforce set. Built and run by scripts/tools.mjs for
// test/integration/deploy.test.ts.
//
//	pss-check LEVEL FILE...   exit 0: every pod template allowed; 1: one is not; 2: usage or parse error
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pss-check: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		fatal("usage: pss-check privileged|baseline|restricted FILE...")
	}
	level, err := api.ParseLevel(os.Args[1])
	if err != nil {
		fatal("level %q: %v", os.Args[1], err)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fatal("%v", err)
	}
	lv := api.LevelVersion{Level: level, Version: api.LatestVersion()}
	checked, denied := 0, 0
	for _, file := range os.Args[2:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fatal("%v", err)
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fatal("%s: %v", file, err)
			}
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				fatal("%s: %v", file, err)
			}
			var meta *metav1.ObjectMeta
			var spec *corev1.PodSpec
			switch head.Kind {
			case "Deployment":
				var d appsv1.Deployment
				if err := yaml.UnmarshalStrict(doc, &d); err != nil {
					fatal("%s: Deployment %s: %v", file, head.Metadata.Name, err)
				}
				meta, spec = &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec
			case "StatefulSet":
				var s appsv1.StatefulSet
				if err := yaml.UnmarshalStrict(doc, &s); err != nil {
					fatal("%s: StatefulSet %s: %v", file, head.Metadata.Name, err)
				}
				meta, spec = &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec
			case "DaemonSet":
				var s appsv1.DaemonSet
				if err := yaml.UnmarshalStrict(doc, &s); err != nil {
					fatal("%s: DaemonSet %s: %v", file, head.Metadata.Name, err)
				}
				meta, spec = &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec
			case "Pod":
				var p corev1.Pod
				if err := yaml.UnmarshalStrict(doc, &p); err != nil {
					fatal("%s: Pod %s: %v", file, head.Metadata.Name, err)
				}
				meta, spec = &p.ObjectMeta, &p.Spec
			default:
				continue
			}
			checked++
			result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, meta, spec))
			if result.Allowed {
				fmt.Printf("%s: %s %s: allowed by PodSecurity %q\n", file, head.Kind, head.Metadata.Name, lv.String())
			} else {
				denied++
				fmt.Printf("%s: %s %s: violates PodSecurity %q: %s\n", file, head.Kind, head.Metadata.Name, lv.String(), result.ForbiddenDetail())
			}
		}
	}
	if checked == 0 {
		fatal("no pod template found")
	}
	if denied > 0 {
		os.Exit(1)
	}
}
