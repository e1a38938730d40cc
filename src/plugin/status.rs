//! `status SOURCE` and `gaps JOB`: what the controller published in the
//! status of a ChainSource's resources, as tables.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Api, Client, ResourceExt};

use super::table::{Table, cell};
use super::{PluginError, get};
use crate::crd::ingest_job::{IngestJob, IngestMode};
use crate::crd::{CacheTier, ChainSource, RetentionPolicy, TrainingExport};

/// Every resource of one ChainSource, read in one pass.
pub struct SourceResources {
    pub source: ChainSource,
    pub jobs: Vec<IngestJob>,
    pub tiers: Vec<CacheTier>,
    pub policies: Vec<RetentionPolicy>,
    pub exports: Vec<TrainingExport>,
}

pub async fn status(client: &Client, namespace: &str, source: &str) -> Result<String, PluginError> {
    let sources: Api<ChainSource> = Api::namespaced(client.clone(), namespace);
    let source_object = get(&sources, "ChainSource", namespace, source).await?;
    let of_source = |name: &str| name == source;
    let jobs = Api::<IngestJob>::namespaced(client.clone(), namespace).list(&Default::default()).await?;
    let tiers = Api::<CacheTier>::namespaced(client.clone(), namespace).list(&Default::default()).await?;
    let policies = Api::<RetentionPolicy>::namespaced(client.clone(), namespace).list(&Default::default()).await?;
    let exports = Api::<TrainingExport>::namespaced(client.clone(), namespace).list(&Default::default()).await?;
    Ok(render_status(&SourceResources {
        source: source_object,
        jobs: jobs.items.into_iter().filter(|j| of_source(&j.spec.source_ref.name)).collect(),
        tiers: tiers.items.into_iter().filter(|t| of_source(&t.spec.source_ref.name)).collect(),
        policies: policies.items.into_iter().filter(|p| of_source(&p.spec.source_ref.name)).collect(),
        exports: exports.items.into_iter().filter(|e| of_source(&e.spec.source_ref.name)).collect(),
    }))
}

/// The `Ready` condition as `status (reason)`, and its message.
fn ready(conditions: Option<&Vec<Condition>>) -> (String, String) {
    match conditions.and_then(|c| c.iter().find(|c| c.type_ == "Ready")) {
        Some(c) => (format!("{} ({})", c.status, c.reason), c.message.clone()),
        None => ("Unknown".into(), "the controller has not reported yet".into()),
    }
}

/// How long something may be starting (not Ready, not Degraded) before that is a problem.
const STARTING_GRACE_SECONDS: i64 = 600;

/// Not Ready, and nothing wrong: work under way or paused.
const UNDER_WAY: [&str; 2] = ["Running", "Suspended"];

/// What is wrong, if anything: `Degraded`; progress that cannot be read; or
/// not `Ready` for longer than a start takes (a tier with no ready replica, a
/// follower that never starts), unless the work is under way or paused.
fn problem(conditions: Option<&Vec<Condition>>) -> Option<String> {
    let find = |kind: &str| conditions.and_then(|c| c.iter().find(|c| c.type_ == kind));
    if let Some(d) = find("Degraded").filter(|d| d.status == "True") {
        return Some(format!("Degraded ({}): {}", d.reason, d.message));
    }
    if let Some(p) = find("Progressing").filter(|p| p.message.contains("progress unknown")) {
        return Some(format!("Progressing ({}): {}", p.reason, p.message));
    }
    let ready = find("Ready")?;
    let minutes = (k8s_openapi::jiff::Timestamp::now().as_second() - ready.last_transition_time.0.as_second()) / 60;
    let starting_too_long = minutes * 60 >= STARTING_GRACE_SECONDS;
    (ready.status != "True" && !UNDER_WAY.contains(&ready.reason.as_str()) && starting_too_long)
        .then(|| format!("not Ready for {minutes}m ({}): {}", ready.reason, ready.message))
}

fn time(t: Option<&Time>) -> String {
    cell(t.map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ")))
}

pub fn render_status(r: &SourceResources) -> String {
    let source = &r.source;
    let status = source.status.clone().unwrap_or_default();
    let (ready_now, message) = ready(Some(&status.common.conditions));
    let mut out = format!(
        "ChainSource {}/{} ({} {}): Ready {ready_now}{}\n",
        source.namespace().unwrap_or_default(),
        source.name_any(),
        source.spec.chain.family.as_str(),
        source.spec.chain.network,
        if message.is_empty() { String::new() } else { format!(": {message}") },
    );
    out.push_str(&format!(
        "  chain head {}, probed {}\n",
        cell(status.chain_head),
        time(status.last_probe_time.as_ref())
    ));
    let mut problems = Vec::new();
    let mut note = |kind: &str, name: String, conditions: Option<&Vec<Condition>>| {
        match (conditions, problem(conditions)) {
            (_, Some(problem)) => problems.push(format!("  {kind}/{name}: {problem}")),
            (None, None) => problems.push(format!("  {kind}/{name}: no status yet: the controller has not reported")),
            _ => {}
        }
        ready(conditions).0
    };
    note("chainsource", source.name_any(), Some(&status.common.conditions));

    if !status.endpoints.is_empty() {
        let mut endpoints = Table::new(&["ENDPOINT", "HEALTHY", "HEAD", "LATENCY", "LAST ERROR"]);
        for e in &status.endpoints {
            endpoints.row(vec![
                e.name.clone(),
                e.healthy.to_string(),
                cell(e.head),
                cell(e.latency_ms.map(|ms| format!("{ms}ms"))),
                cell(e.last_error.clone()),
            ]);
        }
        out.push('\n');
        out.push_str(&endpoints.render());
    }

    let mut jobs = Table::new(&["INGESTJOB", "MODE", "PHASE", "CHECKPOINT", "LAG", "GAPS", "RATE", "READY"]);
    for job in &r.jobs {
        let s = job.status.clone().unwrap_or_default();
        let mode = match job.spec.mode {
            IngestMode::Backfill => "backfill",
            IngestMode::Follow => "follow",
        };
        let ready = note("ingestjob", job.name_any(), job.status.as_ref().map(|st| &st.common.conditions));
        jobs.row(vec![
            job.name_any(),
            mode.into(),
            cell(s.phase.map(|p| format!("{p:?}"))),
            cell(s.checkpoint),
            cell(s.lag_slots),
            s.gaps_open.to_string(),
            cell(s.rate),
            ready,
        ]);
    }
    let mut tiers = Table::new(&["CACHETIER", "REPLICAS", "HIT RATIO", "KEYS", "ENDPOINT", "READY"]);
    for tier in &r.tiers {
        let s = tier.status.clone().unwrap_or_default();
        let ready = note("cachetier", tier.name_any(), tier.status.as_ref().map(|st| &st.common.conditions));
        tiers.row(vec![
            tier.name_any(),
            format!("{}/{}", s.ready_replicas, tier.spec.server.replicas),
            cell(s.hit_ratio),
            cell(s.keys),
            cell(s.endpoint),
            ready,
        ]);
    }
    let mut policies =
        Table::new(&["RETENTIONPOLICY", "SCHEDULE", "DRY RUN", "LAST RUN", "OLDEST KEPT", "HELD AT", "READY"]);
    for policy in &r.policies {
        let s = policy.status.clone().unwrap_or_default();
        let ready = note("retentionpolicy", policy.name_any(), policy.status.as_ref().map(|st| &st.common.conditions));
        policies.row(vec![
            policy.name_any(),
            policy.spec.schedule.clone(),
            policy.spec.dry_run.to_string(),
            time(s.last_run_time.as_ref()),
            cell(s.oldest_slot_kept),
            cell(s.held_at_slot),
            ready,
        ]);
    }
    let mut exports = Table::new(&["TRAININGEXPORT", "PHASE", "DOCUMENTS", "TOKENS", "SHARDS", "DIGEST", "READY"]);
    for export in &r.exports {
        let s = export.status.clone().unwrap_or_default();
        let ready = note("trainingexport", export.name_any(), export.status.as_ref().map(|st| &st.common.conditions));
        exports.row(vec![
            export.name_any(),
            cell(s.phase.map(|p| format!("{p:?}"))),
            s.documents.to_string(),
            s.tokens.to_string(),
            s.shards.to_string(),
            cell(s.dataset_digest.map(|d| d.chars().take(19).collect::<String>())),
            ready,
        ]);
    }
    for table in [jobs, tiers, policies, exports] {
        if !table.is_empty() {
            out.push('\n');
            out.push_str(&table.render());
        }
    }
    if r.jobs.is_empty() && r.tiers.is_empty() && r.policies.is_empty() && r.exports.is_empty() {
        out.push_str("\nno IngestJob, CacheTier, RetentionPolicy or TrainingExport refers to this ChainSource\n");
    }
    if !problems.is_empty() {
        out.push_str("\nproblems:\n");
        out.push_str(&problems.join("\n"));
        out.push('\n');
    }
    out
}

pub async fn gaps(client: &Client, namespace: &str, job: &str) -> Result<String, PluginError> {
    let jobs: Api<IngestJob> = Api::namespaced(client.clone(), namespace);
    Ok(render_gaps(&get(&jobs, "IngestJob", namespace, job).await?))
}

pub fn render_gaps(job: &IngestJob) -> String {
    let s = job.status.clone().unwrap_or_default();
    let mut out = format!(
        "IngestJob {}/{}: {} gaps found, {} repaired, {} open; checkpoint {}\n",
        job.namespace().unwrap_or_default(),
        job.name_any(),
        s.gaps_found,
        s.gaps_repaired,
        s.gaps_open,
        cell(s.checkpoint),
    );
    if s.open_gaps.is_empty() {
        return out;
    }
    let mut table = Table::new(&["SLOT", "ATTEMPTS", "REASON"]);
    for gap in &s.open_gaps {
        table.row(vec![gap.slot.to_string(), gap.attempts.to_string(), gap.reason.clone()]);
    }
    out.push('\n');
    out.push_str(&table.render());
    let unlisted = s.gaps_open.saturating_sub(s.open_gaps.len() as u64);
    if unlisted > 0 {
        out.push_str(&format!(
            "… and {unlisted} more above slot {} (the catalog holds them all)\n",
            s.open_gaps.last().map_or(0, |g| g.slot)
        ));
    }
    out
}
