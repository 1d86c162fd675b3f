// Package deploy renders the Kubernetes manifests that embed the rules and dashboards (manifests.go, written
// by `go run ./gen`); its tests check the deployment files around the exporter. The Dockerfile is built
// with podman and its image inspected; the systemd units pass `systemd-analyze verify` and keep the exposure
// score docs/deployment.md quotes; every Kubernetes manifest decodes strictly into the official API types,
// every kustomization builds, and the PrometheusRule and dashboards ConfigMap match the rule files and
// dashboards they are generated from.
//
// After changing deploy/rules/*.yml or dashboards/*.json, regenerate the Kubernetes copies with
// `go generate ./deploy` (after the generators of those directories have run).
package deploy

//go:generate go run ./gen -root ..
