//! What a CacheTier's serve replicas report on `/metrics`, summed over its
//! ready pods: the cache hit ratio its status shows. Each pod is asked
//! directly (a Service would answer for one pod at a time), with a timeout; a
//! pod that does not answer is left out, and no answer at all leaves the
//! ratio unknown rather than wrong.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::context::Context;

/// Cache hits and misses in a `chronicle serve` metrics text
/// (`chronicle_serve_cache_total{method=…,result="hit"|"miss"} N`).
pub fn cache_counts(metrics: &str) -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    for line in metrics.lines().filter(|l| l.starts_with("chronicle_serve_cache_total{")) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if line.contains("result=\"hit\"") {
            hits += value as u64;
        } else if line.contains("result=\"miss\"") {
            misses += value as u64;
        }
    }
    (hits, misses)
}

/// The hit ratio over the ready pods matching `selector`, e.g. `0.93`.
pub async fn hit_ratio(ctx: &Context, namespace: &str, selector: &str, port: i32) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pods = pods.list(&ListParams::default().labels(selector)).await.ok()?;
    let (mut hits, mut misses, mut answered) = (0, 0, 0);
    for pod in pods {
        let Some(status) = pod.status else { continue };
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        let Some(ip) = status.pod_ip.filter(|_| ready) else { continue };
        let url = format!("http://{ip}:{port}/metrics");
        let Ok(response) = ctx.http.get(&url).send().await else { continue };
        let Ok(text) = response.text().await else { continue };
        let (h, m) = cache_counts(&text);
        (hits, misses, answered) = (hits + h, misses + m, answered + 1);
    }
    (answered > 0 && hits + misses > 0).then(|| format!("{:.2}", hits as f64 / (hits + misses) as f64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hits_and_misses_are_summed_over_methods() {
        let text = "# TYPE chronicle_serve_cache counter\n\
            chronicle_serve_cache_total{method=\"getBlock\",result=\"hit\"} 9\n\
            chronicle_serve_cache_total{method=\"getTransaction\",result=\"hit\"} 3\n\
            chronicle_serve_cache_total{method=\"getBlock\",result=\"miss\"} 4\n\
            chronicle_serve_requests_total{method=\"getBlock\",outcome=\"ok\"} 13\n";
        assert_eq!(super::cache_counts(text), (12, 4));
    }
}
