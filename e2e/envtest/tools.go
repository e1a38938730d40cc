//go:build tools

// Keeps kube-apiserver's packages in the module graph so that
// `go build k8s.io/kubernetes/cmd/kube-apiserver` builds from this module.
package envtest

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
