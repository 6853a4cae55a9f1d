//! Remediation actions against the Kubernetes API.
