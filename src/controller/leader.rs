//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! controller replicas exactly one reconciles. The holder renews the lease
//! every `renew`; a lease not renewed for `duration` may be taken over. A
//! leader that cannot renew stops leading (the process exits and restarts as
//! a candidate): two replicas never act at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config }
    }

    fn expired(&self, lease: &Lease) -> bool {
        let Some(spec) = &lease.spec else { return true };
        let Some(renewed) = &spec.renew_time else { return true };
        let duration =
            spec.lease_duration_seconds.map_or(self.config.duration, |s| Duration::from_secs(s.max(0) as u64));
        let age = Timestamp::now().duration_since(renewed.0);
        age.as_secs_f64() > duration.as_secs_f64()
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to hold the lease; `Ok(true)` while this replica leads.
    /// Updates carry the read resourceVersion, so of two racing candidates
    /// the API server lets one win.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let name = &self.config.name;
        match self.api.get_opt(name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                    spec: Some(self.spec(0, None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
                if !ours && !self.expired(&lease) {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 };
                let acquired = if ours { spec.acquire_time.clone() } else { None };
                lease.spec = Some(self.spec(transitions, acquired));
                match self.api.replace(name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        loop {
            if self.try_acquire_or_renew().await? {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became the leader");
                return Ok(());
            }
            tokio::time::sleep(self.config.renew).await;
        }
    }

    /// Renews until a renewal fails or the lease is lost; returns then.
    pub async fn keep(&self) {
        loop {
            tokio::time::sleep(self.config.renew).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!("lost the lease to another replica");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot renew the lease");
                    return;
                }
            }
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.config.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self.api.replace(&self.config.name, &PostParams::default(), &lease).await;
        }
    }
}
