//! The Google Bigtable backend: data through `bigtable_rs`, tables and the
//! column family through the Bigtable admin API. Talks to the emulator when an
//! emulator host is given (as agave does with `BIGTABLE_EMULATOR_HOST`),
//! otherwise to Google with a service-account key file or the ambient
//! credentials (workload identity). Credentials are never logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bigtable_rs::bigtable::{BigTable, BigTableConnection, RowCell};
use bigtable_rs::google::bigtable::v2::{
    MutateRowsRequest, Mutation, ReadRowsRequest, RowFilter, RowRange, RowSet, mutate_rows_request, mutation,
    row_filter, row_range,
};
use futures::StreamExt;
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::{
    self as admin, ColumnFamily, CreateTableRequest, GetTableRequest, ModifyColumnFamiliesRequest,
    bigtable_table_admin_client::BigtableTableAdminClient,
    modify_column_families_request::{Modification, modification},
};
use tonic::transport::{Channel, ClientTlsConfig};

use super::cells::{BackendError, CellStore, FAMILY, KeyRange, Row, Table, TableWrite};

/// Where a Bigtable instance is and how to reach it.
#[derive(Clone, Debug)]
pub struct BigtableConfig {
    pub project: String,
    pub instance: String,
    pub app_profile: String,
    /// `host:port` of an emulator; `None` means Google's endpoint.
    pub emulator_host: Option<String>,
    /// Path of a service-account JSON key; `None` means ambient credentials.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Deadline of each request.
    pub timeout: Duration,
}

pub struct BigtableCells {
    config: BigtableConfig,
    data: BigTable,
    admin: BigtableTableAdminClient<Channel>,
    token: Option<Arc<dyn gcp_auth::TokenProvider>>,
}

/// Transient gRPC failures worth another try; everything else fails at once.
fn is_transient(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(status.code(), Unavailable | DeadlineExceeded | Aborted | ResourceExhausted | Internal | Unknown)
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(8)
        .with_jitter()
}

impl BigtableCells {
    pub async fn connect(config: BigtableConfig) -> Result<Self, BackendError> {
        let describe = format!("bigtable://{}/{}", config.project, config.instance);
        let error = |message: String| BackendError { backend: describe.clone(), table: "-".into(), message };
        let (connection, admin_channel, token) = match &config.emulator_host {
            Some(host) => {
                let connection = BigTableConnection::new_with_emulator(
                    host,
                    &config.project,
                    &config.instance,
                    false,
                    4,
                    Some(config.timeout),
                )
                .map_err(|e| error(format!("emulator {host}: {e}")))?;
                let channel = Channel::from_shared(format!("http://{host}"))
                    .map_err(|e| error(format!("emulator address {host}: {e}")))?
                    .timeout(config.timeout)
                    .connect_lazy();
                (connection, channel, None)
            }
            None => {
                let token: Arc<dyn gcp_auth::TokenProvider> = match &config.credentials_file {
                    Some(path) => Arc::new(
                        gcp_auth::CustomServiceAccount::from_file(path)
                            .map_err(|e| error(format!("service-account key {}: {e}", path.display())))?,
                    ),
                    None => gcp_auth::provider().await.map_err(|e| error(format!("Google credentials: {e}")))?,
                };
                let connection = BigTableConnection::new_with_token_provider(
                    &config.project,
                    &config.instance,
                    false,
                    4,
                    Some(config.timeout),
                    token.clone(),
                )
                .map_err(|e| error(format!("connect: {e}")))?;
                let channel = Channel::from_static("https://bigtableadmin.googleapis.com")
                    .tls_config(ClientTlsConfig::new().with_native_roots())
                    .map_err(|e| error(format!("admin TLS: {e}")))?
                    .timeout(config.timeout)
                    .connect_lazy();
                (connection, channel, Some(token))
            }
        };
        Ok(Self { config, data: connection.client(), admin: BigtableTableAdminClient::new(admin_channel), token })
    }

    fn error(&self, table: Table, message: impl std::fmt::Display) -> BackendError {
        BackendError { backend: self.describe(), table: table.name().into(), message: message.to_string() }
    }

    fn instance_path(&self) -> String {
        format!("projects/{}/instances/{}", self.config.project, self.config.instance)
    }

    /// An admin request, with a bearer token when talking to Google.
    async fn admin_request<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let token = token
                .token(&["https://www.googleapis.com/auth/bigtable.admin.table"])
                .await
                .map_err(|e| e.to_string())?;
            let value =
                format!("Bearer {}", token.as_str()).parse().map_err(|_| "token is not a valid header".to_string())?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    async fn ensure_table(&self, table: Table) -> Result<(), BackendError> {
        let name = format!("{}/tables/{}", self.instance_path(), table.name());
        let mut admin = self.admin.clone();
        let get = GetTableRequest { name: name.clone(), view: admin::table::View::SchemaView as i32 };
        // Retried like data calls: the service may be briefly unreachable.
        let get_table = || {
            let (mut admin, get) = (self.admin.clone(), get.clone());
            async move {
                let request = self.admin_request(get).await.map_err(tonic::Status::unauthenticated)?;
                admin.get_table(request).await
            }
        };
        let existing = match get_table.retry(backoff()).when(is_transient).await {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(self.error(table, format!("get table: {}", status.message()))),
        };
        match existing {
            None => {
                let create = CreateTableRequest {
                    parent: self.instance_path(),
                    table_id: table.name().into(),
                    table: Some(admin::Table {
                        column_families: [(FAMILY.to_string(), ColumnFamily::default())].into_iter().collect(),
                        ..Default::default()
                    }),
                    initial_splits: Vec::new(),
                };
                match admin.create_table(self.admin_request(create).await.map_err(|e| self.error(table, e))?).await {
                    Ok(_) => Ok(()),
                    // Another worker created it first.
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(status) => Err(self.error(table, format!("create table: {}", status.message()))),
                }
            }
            Some(found) if found.column_families.contains_key(FAMILY) => Ok(()),
            Some(_) => {
                let modify = ModifyColumnFamiliesRequest {
                    name,
                    modifications: vec![Modification {
                        id: FAMILY.into(),
                        update_mask: None,
                        r#mod: Some(modification::Mod::Create(ColumnFamily::default())),
                    }],
                    ignore_warnings: false,
                };
                admin
                    .modify_column_families(self.admin_request(modify).await.map_err(|e| self.error(table, e))?)
                    .await
                    .map(|_| ())
                    .map_err(|status| self.error(table, format!("create column family: {}", status.message())))
            }
        }
    }

    async fn read(&self, table: Table, rows: RowSet, limit: usize, keys_only: bool) -> Result<Vec<Row>, BackendError> {
        let latest = RowFilter { filter: Some(row_filter::Filter::CellsPerColumnLimitFilter(1)) };
        let filter = if keys_only {
            let strip = RowFilter { filter: Some(row_filter::Filter::StripValueTransformer(true)) };
            RowFilter { filter: Some(row_filter::Filter::Chain(row_filter::Chain { filters: vec![latest, strip] })) }
        } else {
            latest
        };
        let request = ReadRowsRequest {
            table_name: self.data.get_full_table_name(table.name()),
            app_profile_id: self.config.app_profile.clone(),
            rows: Some(rows),
            filter: Some(filter),
            rows_limit: i64::try_from(limit).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let read = || {
            let mut client = self.data.clone();
            let request = request.clone();
            async move { client.read_rows(request).await }
        };
        let rows = read
            .retry(backoff())
            .when(|e| matches!(e, bigtable_rs::bigtable::Error::RpcError(status) if is_transient(status)))
            .await
            .map_err(|e| self.error(table, format!("read: {e}")))?;
        rows.into_iter().map(|(key, cells)| self.to_row(table, key, cells)).collect()
    }

    fn to_row(&self, table: Table, key: Vec<u8>, cells: Vec<RowCell>) -> Result<Row, BackendError> {
        let key = String::from_utf8(key).map_err(|_| self.error(table, "row key is not UTF-8"))?;
        let cells = cells
            .into_iter()
            .filter_map(|cell| String::from_utf8(cell.qualifier).ok().map(|q| (q, cell.value)))
            .collect();
        Ok(Row { key, cells })
    }

    async fn mutate(&self, table: Table, entries: Vec<mutate_rows_request::Entry>) -> Result<(), BackendError> {
        if entries.is_empty() {
            return Ok(());
        }
        let request = MutateRowsRequest {
            table_name: self.data.get_full_table_name(table.name()),
            app_profile_id: self.config.app_profile.clone(),
            entries,
            ..Default::default()
        };
        let send = || {
            let mut client = self.data.clone();
            let request = request.clone();
            async move {
                let mut responses = client.mutate_rows(request).await.map_err(MutateError::Rpc)?;
                while let Some(response) = responses.next().await {
                    for entry in response.map_err(|s| MutateError::Rpc(s.into()))?.entries {
                        if let Some(status) = entry.status.filter(|s| s.code != 0) {
                            return Err(MutateError::Entry {
                                index: entry.index,
                                code: status.code,
                                message: status.message,
                            });
                        }
                    }
                }
                Ok(())
            }
        };
        send.retry(backoff()).when(MutateError::is_transient).await.map_err(|e| self.error(table, e))
    }
}

#[derive(Debug, thiserror::Error)]
enum MutateError {
    #[error("mutate: {0}")]
    Rpc(bigtable_rs::bigtable::Error),
    #[error("mutate: entry {index} failed with code {code}: {message}")]
    Entry { index: i64, code: i32, message: String },
}

impl MutateError {
    fn is_transient(&self) -> bool {
        match self {
            MutateError::Rpc(bigtable_rs::bigtable::Error::RpcError(status)) => is_transient(status),
            MutateError::Rpc(_) => false,
            // UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED
            MutateError::Entry { code, .. } => matches!(code, 14 | 4 | 10 | 8),
        }
    }
}

fn set_cell(qualifier: &str, value: Vec<u8>) -> Mutation {
    Mutation {
        mutation: Some(mutation::Mutation::SetCell(mutation::SetCell {
            family_name: FAMILY.into(),
            column_qualifier: qualifier.as_bytes().to_vec(),
            // -1: the server assigns the write time, as agave does.
            timestamp_micros: -1,
            value,
        })),
    }
}

#[async_trait]
impl CellStore for BigtableCells {
    fn describe(&self) -> String {
        format!("bigtable://{}/{}", self.config.project, self.config.instance)
    }

    async fn ensure_tables(&self, tables: &[Table]) -> Result<(), BackendError> {
        for table in tables.iter().copied() {
            self.ensure_table(table).await?;
        }
        Ok(())
    }

    /// Asks the admin API; without admin rights, probes with a read.
    async fn has_table(&self, table: Table) -> Result<bool, BackendError> {
        let name = format!("{}/tables/{}", self.instance_path(), table.name());
        let get = GetTableRequest { name, view: admin::table::View::NameOnly as i32 };
        let request = self.admin_request(get).await.map_err(|e| self.error(table, e))?;
        match self.admin.clone().get_table(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => {
                // No admin access (a read-only origin): a data read of any key
                // answers for an existing table and fails for a missing one.
                tracing::debug!(table = table.name(), code = ?status.code(), "no admin answer; probing with a read");
                Ok(self.read_rows(table, &["chronicle-table-probe".to_string()]).await.is_ok())
            }
        }
    }

    async fn write(&self, writes: Vec<TableWrite>) -> Result<(), BackendError> {
        let requests = writes.into_iter().map(|write| {
            let entries = write
                .cells
                .into_iter()
                .map(|cell| mutate_rows_request::Entry {
                    row_key: cell.key.into_bytes(),
                    mutations: vec![set_cell(cell.qualifier, cell.value)],
                    idempotency: None,
                })
                .collect();
            self.mutate(write.table, entries)
        });
        futures::future::try_join_all(requests).await.map(|_| ())
    }

    async fn read_rows(&self, table: Table, keys: &[String]) -> Result<Vec<Row>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = RowSet { row_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(), row_ranges: Vec::new() };
        self.read(table, rows, keys.len(), false).await
    }

    async fn scan(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let row_range = RowRange {
            start_key: Some(row_range::StartKey::StartKeyClosed(range.start.into_bytes())),
            end_key: range.end.map(|end| row_range::EndKey::EndKeyClosed(end.into_bytes())),
        };
        self.read(table, RowSet { row_keys: Vec::new(), row_ranges: vec![row_range] }, limit, keys_only).await
    }

    async fn delete_rows(&self, table: Table, keys: &[String]) -> Result<(), BackendError> {
        let delete = Mutation { mutation: Some(mutation::Mutation::DeleteFromRow(mutation::DeleteFromRow {})) };
        let entries = keys
            .iter()
            .map(|key| mutate_rows_request::Entry {
                row_key: key.as_bytes().to_vec(),
                mutations: vec![delete.clone()],
                idempotency: None,
            })
            .collect();
        self.mutate(table, entries).await
    }

    async fn sync(&self) -> Result<(), BackendError> {
        Ok(()) // an acknowledged MutateRows is durable
    }

    async fn set_max_age(&self, tables: &[Table], max_age: Duration) -> Result<(), BackendError> {
        let age = prost_types::Duration { seconds: i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX), nanos: 0 };
        let family = ColumnFamily {
            gc_rule: Some(admin::GcRule { rule: Some(admin::gc_rule::Rule::MaxAge(age)) }),
            ..ColumnFamily::default()
        };
        for table in tables {
            let modify = ModifyColumnFamiliesRequest {
                name: format!("{}/tables/{}", self.instance_path(), table.name()),
                modifications: vec![Modification {
                    id: FAMILY.into(),
                    update_mask: None,
                    r#mod: Some(modification::Mod::Update(family.clone())),
                }],
                ignore_warnings: false,
            };
            let mut admin = self.admin.clone();
            admin
                .modify_column_families(self.admin_request(modify).await.map_err(|e| self.error(*table, e))?)
                .await
                .map_err(|status| self.error(*table, format!("set GC rule: {}", status.message())))?;
        }
        Ok(())
    }
}
