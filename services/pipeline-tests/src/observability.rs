//! Proof of docker-compose.yml's `observability` profile: Prometheus finds every producer and
//! every scaled tracker by service name, and every query of the committed Grafana dashboard
//! returns data for what the test made happen.
//!
//! Used by the compose end-to-end target (tests/compose.rs), on the stack it has already built
//! and started: [`check_discovery`] compares Prometheus's targets with the running containers
//! of each service, [`check_dashboard`] evaluates every dashboard query. Without a registry the
//! Prometheus of the profile is the stand-in from Debian's package
//! (`deploy/standins/prometheus.sh`, swapped in by `deploy/compose.observability-standin.yml`);
//! the scrape configuration it reads is the committed file, mounted by the committed service.
//!
//! The dashboard's queries are read from its JSON, not restated here: a panel added to the
//! dashboard is checked without touching this file, and a query that returns nothing fails.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed dashboard.
pub fn dashboard_path() -> PathBuf {
    repo_root().join("deploy/observability/grafana/dashboards/order-pipeline.json")
}

/// The committed scrape configuration.
pub fn prometheus_config_path() -> PathBuf {
    repo_root().join("deploy/observability/prometheus.yml")
}

/// The port Prometheus scrapes: the services' default HEALTH_PORT, from its declaration.
pub fn default_health_port() -> &'static str {
    service_runtime::config::HEALTH_PORT
        .default
        .expect("HEALTH_PORT has a default")
}

/// One PromQL query of one dashboard panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
    /// The labels the panel's legend shows (`{{label}}` in `legendFormat`): every series the
    /// query returns must carry them, or the panel shows blank names.
    pub legend_labels: Vec<String>,
}

/// Every query of every panel (rows' nested panels included), in dashboard order.
pub fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &[Value], out: &mut Vec<PanelQuery>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let legend = target["legendFormat"].as_str().unwrap_or_default();
                    out.push(PanelQuery {
                        panel: title.clone(),
                        expr: expr.to_string(),
                        legend_labels: legend_labels(legend),
                    });
                }
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard["panels"].as_array().map_or(&[], Vec::as_slice),
        &mut out,
    );
    out
}

/// `{{job}} {{instance}}` → `["job", "instance"]`.
pub fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_string())
        .collect()
}

/// One series of an instant query.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One active scrape target.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub health: String,
}

/// Prometheus's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
}

impl Prometheus {
    pub fn new(base: impl Into<String>) -> Prometheus {
        Prometheus { base: base.into() }
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let mut request = ureq::get(format!("{}{path}", self.base));
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let mut response = request.call().map_err(|e| format!("GET {path}: {e}"))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {path}: {e}"))?;
        let json: Value = serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}"))?;
        if json["status"] != "success" {
            return Err(format!("GET {path}: {body}"));
        }
        Ok(json["data"].clone())
    }

    /// Whether the API answers at all.
    pub fn ready(&self) -> bool {
        self.get("/api/v1/status/buildinfo", &[]).is_ok()
    }

    /// `version` from the build information (the stand-in says which Prometheus it is).
    pub fn version(&self) -> Result<String, String> {
        Ok(self.get("/api/v1/status/buildinfo", &[])?["version"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Evaluates `expr` now; an instant vector is expected.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.get("/api/v1/query", &[("query", expr)])?;
        if data["resultType"] != "vector" {
            return Err(format!("{expr}: result type {}", data["resultType"]));
        }
        Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| Sample {
                labels: series["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                value: series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            })
            .collect())
    }

    /// The targets Prometheus is scraping now.
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        let data = self.get("/api/v1/targets", &[("state", "active")])?;
        Ok(data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Target {
                job: t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                instance: t["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                health: t["health"].as_str().unwrap_or_default().to_string(),
            })
            .collect())
    }
}

/// Why a dashboard query's answer does not count as data: empty, a series without a legend
/// label, a value that is not a finite number, or nothing above zero.
pub fn judge(query: &PanelQuery, samples: &[Sample]) -> Result<(), String> {
    if samples.is_empty() {
        return Err("no series".into());
    }
    for sample in samples {
        for label in &query.legend_labels {
            if sample.labels.get(label).is_none_or(String::is_empty) {
                return Err(format!(
                    "a series has no `{label}` label: {:?}",
                    sample.labels
                ));
            }
        }
        if !sample.value.is_finite() {
            return Err(format!("value {} for {:?}", sample.value, sample.labels));
        }
    }
    if !samples.iter().any(|s| s.value > 0.0) {
        return Err(format!("every value is zero: {samples:?}"));
    }
    Ok(())
}

/// Polls `check` until it succeeds or `timeout` passes; the last error says why not.
pub fn until_ok<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// Waits up to `timeout` until the targets of each job in `scraped` (job name = service name)
/// are exactly the running containers of that service, by IP and the services' default health
/// port, and all of them healthy; returns all active targets.
pub fn check_discovery(
    running_ips: impl Fn(&str) -> Result<BTreeSet<String>, String>,
    prometheus: &Prometheus,
    scraped: &[&str],
    timeout: Duration,
) -> Result<Vec<Target>, String> {
    until_ok(timeout, || {
        let targets = prometheus.targets()?;
        for service in scraped {
            let want: BTreeSet<String> = running_ips(service)?
                .into_iter()
                .map(|ip| format!("{ip}:{}", default_health_port()))
                .collect();
            // Every target of the job, whatever its health: a stopped container's target stays
            // (as "down") until the next service-discovery refresh, and following a stop means
            // it is gone, not merely unhealthy.
            let known: BTreeSet<String> = targets
                .iter()
                .filter(|t| t.job == *service)
                .map(|t| t.instance.clone())
                .collect();
            let healthy: BTreeSet<String> = targets
                .iter()
                .filter(|t| t.job == *service && t.health == "up")
                .map(|t| t.instance.clone())
                .collect();
            if want.is_empty() || want != known || want != healthy {
                return Err(format!(
                    "job {service}: targets {known:?} of which healthy {healthy:?}, running containers {want:?} (all targets: {targets:?})"
                ));
            }
        }
        Ok(targets)
    })
}

/// Evaluates every query of the committed dashboard against `prometheus` until each returns
/// data (see [`judge`]) or `timeout` passes; returns each query with the number of series and
/// the largest value it returned. Every failing query is reported, not just the first.
pub fn check_dashboard(
    prometheus: &Prometheus,
    timeout: Duration,
) -> Result<Vec<(PanelQuery, usize, f64)>, Vec<String>> {
    let dashboard: Value = std::fs::read_to_string(dashboard_path())
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .map_err(|why| vec![format!("dashboard: {why}")])?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    let deadline = Instant::now() + timeout;
    for query in dashboard_queries(&dashboard) {
        let left = deadline.saturating_duration_since(Instant::now());
        match until_ok(left, || {
            let samples = prometheus.query(&query.expr)?;
            judge(&query, &samples)?;
            Ok(samples)
        }) {
            Ok(samples) => {
                let max = samples.iter().map(|s| s.value).fold(f64::MIN, f64::max);
                found.push((query, samples.len(), max));
            }
            Err(why) => failures.push(format!("panel {:?}: {}: {why}", query.panel, query.expr)),
        }
    }
    if failures.is_empty() {
        Ok(found)
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_labels_are_read_from_the_legend_format() {
        assert_eq!(
            legend_labels("{{job}} {{ instance }}"),
            vec!["job", "instance"]
        );
        assert!(legend_labels("p50").is_empty());
    }

    #[test]
    fn a_query_with_no_series_or_only_zeros_is_no_data() {
        let query = PanelQuery {
            panel: "p".into(),
            expr: "x".into(),
            legend_labels: vec!["reason".into()],
        };
        let sample = |reason: &str, value: f64| Sample {
            labels: [("reason".to_string(), reason.to_string())].into(),
            value,
        };
        assert!(judge(&query, &[]).is_err());
        assert!(judge(&query, &[sample("a", 0.0)]).is_err());
        assert!(judge(&query, &[sample("", 1.0)]).is_err());
        assert!(judge(&query, &[sample("a", f64::NAN)]).is_err());
        assert!(judge(&query, &[sample("a", 0.0), sample("b", 2.0)]).is_ok());
    }
}
