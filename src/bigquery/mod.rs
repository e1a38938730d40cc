//! Google BigQuery, for the chains' history sources: a `gcp-bigquery-client`
//! client (Google's endpoint with a service-account key, or any endpoint
//! without credentials, such as the BigQuery emulator), queries paged to
//! the end, retried with backoff on 5xx and quota errors, and rows decoded
//! from BigQuery's positional `f`/`v` JSON into named JSON by the answer's
//! schema, ready for serde into the chain's row structs.

pub mod source;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::{Map, Value};

/// How to reach BigQuery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BigQueryAccess {
    /// The REST base (`…/bigquery/v2`); `None` is Google's.
    pub endpoint: Option<String>,
    /// The project queries run (and are billed) in.
    pub project: String,
    /// The dataset's location (`US`), where queries run.
    pub location: Option<String>,
    /// A service-account key file; without one, requests carry no credentials (an emulator).
    pub credentials_file: Option<String>,
    /// Tries per query before it fails.
    pub attempts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Worth another try: 5xx, rate and quota limits, transport failures.
    #[error("BigQuery: {0}")]
    Transient(String),
    #[error("BigQuery: {0}")]
    Failed(String),
    /// A row that does not fit its table's schema (or ours).
    #[error("BigQuery row: {0}")]
    Row(String),
}

pub struct BigQuery {
    client: gcp_bigquery_client::Client,
    access: BigQueryAccess,
}

/// No credentials: the emulator accepts any request.
#[derive(Clone)]
struct Anonymous;

#[async_trait::async_trait]
impl Authenticator for Anonymous {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(String::new())
    }
}

impl BigQuery {
    pub async fn connect(access: BigQueryAccess) -> Result<Self, QueryError> {
        let mut builder = gcp_bigquery_client::client_builder::ClientBuilder::new();
        if let Some(endpoint) = &access.endpoint {
            builder.with_v2_base_url(endpoint.trim_end_matches('/').to_string());
        }
        let client = match &access.credentials_file {
            Some(file) => builder.build_from_service_account_key_file(file).await,
            None => builder.build_from_authenticator(Arc::new(Anonymous)).await,
        }
        .map_err(|e| QueryError::Failed(format!("connecting: {e}")))?;
        Ok(Self { client, access })
    }

    /// Every row `sql` answers, as named JSON objects, across all pages.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Value>, QueryError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.access.attempts.max(1) - 1)
            .with_jitter();
        (|| self.rows_once(sql)).retry(backoff).when(|e| matches!(e, QueryError::Transient(_))).await
    }

    async fn rows_once(&self, sql: &str) -> Result<Vec<Value>, QueryError> {
        let project = &self.access.project;
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.location = self.access.location.clone();
        let answer = self.client.job().query(project, request).await.map_err(classify)?;
        if let Some(errors) = answer.errors.filter(|e| !e.is_empty()) {
            let messages: Vec<String> = errors.iter().filter_map(|e| e.message.clone()).collect();
            return Err(QueryError::Failed(messages.join("; ")));
        }
        let fields = answer.schema.and_then(|s| s.fields).unwrap_or_default();
        let mut rows = decode_all(&fields, answer.rows.unwrap_or_default())?;
        let job = answer.job_reference.and_then(|r| r.job_id);
        let mut page = answer.page_token;
        while let (Some(token), Some(job)) = (page.clone(), job.as_ref()) {
            let parameters = GetQueryResultsParameters { page_token: Some(token), ..Default::default() };
            let next = self.client.job().get_query_results(project, job, parameters).await.map_err(classify)?;
            rows.extend(decode_all(&fields, next.rows.unwrap_or_default())?);
            page = next.page_token;
        }
        Ok(rows)
    }
}

fn classify(error: BQError) -> QueryError {
    match &error {
        BQError::ResponseError { error: response } => {
            let reasons: Vec<&str> =
                response.error.errors.iter().filter_map(|e| e.get("reason")).map(String::as_str).collect();
            let quota = reasons.iter().any(|r| matches!(*r, "rateLimitExceeded" | "quotaExceeded" | "backendError"));
            let message = format!("{} {}", response.error.code, response.error.message);
            if response.error.code >= 500 || response.error.code == 429 || quota {
                QueryError::Transient(message)
            } else {
                QueryError::Failed(message)
            }
        }
        BQError::RequestError(e) if e.is_timeout() || e.is_connect() || e.is_request() => {
            QueryError::Transient(format!("transport: {e}"))
        }
        _ => QueryError::Failed(error.to_string()),
    }
}

fn decode_all(fields: &[TableFieldSchema], rows: Vec<TableRow>) -> Result<Vec<Value>, QueryError> {
    rows.iter().map(|row| record(fields, row.columns.as_deref().unwrap_or_default())).collect()
}

/// A record's cells (`[{"v": …}]`) as an object by field name.
fn record(
    fields: &[TableFieldSchema],
    cells: &[gcp_bigquery_client::model::table_cell::TableCell],
) -> Result<Value, QueryError> {
    let mut object = Map::new();
    for (field, cell) in fields.iter().zip(cells) {
        let value = cell.value.clone().unwrap_or(Value::Null);
        let decoded = if field.mode.as_deref() == Some("REPEATED") {
            let items = match value {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => return Err(QueryError::Row(format!("{}: not a list: {other}", field.name))),
            };
            let values: Result<Vec<Value>, _> =
                items.into_iter().map(|item| scalar(field, item.get("v").cloned().unwrap_or(item))).collect();
            Value::Array(values?)
        } else {
            scalar(field, value)?
        };
        object.insert(field.name.clone(), decoded);
    }
    Ok(Value::Object(object))
}

/// One value of a field, from BigQuery's string encoding to JSON's types.
fn scalar(field: &TableFieldSchema, value: Value) -> Result<Value, QueryError> {
    let bad = |what: &str, value: &Value| QueryError::Row(format!("{}: {value} is not {what}", field.name));
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = || value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
    Ok(match field.r#type {
        FieldType::Record | FieldType::Struct => {
            let cells: Vec<gcp_bigquery_client::model::table_cell::TableCell> =
                serde_json::from_value(value.get("f").cloned().unwrap_or_default())
                    .map_err(|_| bad("a record", &value))?;
            record(field.fields.as_deref().unwrap_or_default(), &cells)?
        }
        FieldType::Integer | FieldType::Int64 => {
            let text = text();
            match text.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::from(text.parse::<u64>().map_err(|_| bad("an integer", &value))?),
            }
        }
        // Integers stay exact: lamports and counts as numbers; wei, which
        // passes 2^64, as its decimal digits. Fractions are floats.
        // (BIGNUMERIC stays text, below: token amounts our rows keep as strings.)
        FieldType::Numeric => {
            let text = text();
            match integer_digits(&text) {
                Some(digits) => match (digits.parse::<i64>(), digits.parse::<u64>()) {
                    (Ok(n), _) => Value::from(n),
                    (_, Ok(n)) => Value::from(n),
                    _ => Value::String(digits),
                },
                None => Value::from(text.parse::<f64>().map_err(|_| bad("a number", &value))?),
            }
        }
        FieldType::Float | FieldType::Float64 => {
            Value::from(text().parse::<f64>().map_err(|_| bad("a float", &value))?)
        }
        FieldType::Boolean | FieldType::Bool => Value::from(text().eq_ignore_ascii_case("true")),
        // Google answers seconds as a float (`1.656057273E9`); the emulator microseconds.
        FieldType::Timestamp => {
            let text = text();
            let micros = if text.contains(['.', 'e', 'E']) {
                (text.parse::<f64>().map_err(|_| bad("a timestamp", &value))? * 1e6).round() as i64
            } else {
                text.parse::<i64>().map_err(|_| bad("a timestamp", &value))?
            };
            Value::from(micros)
        }
        // Token amounts: the digits as text, however BigQuery writes them.
        FieldType::Bignumeric => {
            let text = text();
            Value::String(integer_digits(&text).unwrap_or(text))
        }
        _ => Value::from(text()),
    })
}

/// The decimal digits of a NUMERIC that is a whole number, however BigQuery
/// writes it (`12`, `12.000000000`, `1.2E1`, `-5`), or `None` for a fraction.
fn integer_digits(text: &str) -> Option<String> {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        // BigQuery's widest type has 77 digits: a larger exponent is no number of ours.
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok().filter(|e| e.abs() <= 100)?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The digits shifted by the exponent: what stays after the point must be zeros.
    let digits = format!("{whole}{fraction}");
    let point = whole.len() as i64 + exponent as i64;
    if point < 0 {
        return digits.bytes().all(|b| b == b'0').then(|| "0".to_string());
    }
    let point = point as usize;
    let (integer, rest) = if point >= digits.len() {
        (format!("{digits}{}", "0".repeat(point - digits.len())), String::new())
    } else {
        (digits[..point].to_string(), digits[point..].to_string())
    };
    if !rest.bytes().all(|b| b == b'0') {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    Some(match integer {
        "" => "0".to_string(),
        digits => format!("{sign}{digits}"),
    })
}

#[cfg(test)]
mod tests {
    use gcp_bigquery_client::model::field_type::FieldType;
    use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
    use serde_json::json;

    use super::{integer_digits, scalar};

    #[test]
    fn numerics_are_exact_integers_and_bignumerics_stay_text() {
        let field = |r#type| TableFieldSchema { r#type, ..TableFieldSchema::new("amount", FieldType::String) };
        let numeric = field(FieldType::Numeric);
        assert_eq!(scalar(&numeric, json!("5.000000000")).unwrap(), json!(5));
        assert_eq!(scalar(&numeric, json!("100000000000000000000.000000000")).unwrap(), json!("100000000000000000000"));
        assert_eq!(scalar(&numeric, json!("0.5")).unwrap(), json!(0.5));
        let bignumeric = field(FieldType::Bignumeric);
        assert_eq!(scalar(&bignumeric, json!("1500")).unwrap(), json!("1500"), "a token amount stays a string");
        assert_eq!(scalar(&bignumeric, json!("1.5E3")).unwrap(), json!("1500"));
        assert_eq!(scalar(&bignumeric, json!("0.25")).unwrap(), json!("0.25"));
    }

    #[test]
    fn whole_numerics_keep_every_digit_in_any_notation() {
        for (text, want) in [
            ("12", Some("12")),
            ("12.000000000", Some("12")),
            ("1.2E1", Some("12")),
            ("7.2475E6", Some("7247500")),
            ("-5", Some("-5")),
            ("0.0", Some("0")),
            ("123456789012345678901234567890", Some("123456789012345678901234567890")),
            ("1.23456789012345678901E20", Some("123456789012345678901")),
            ("12.5", None),
            ("1.25E1", None),
            ("1E-3", None),
            ("abc", None),
            ("", None),
            ("1E2000000000", None),
        ] {
            assert_eq!(integer_digits(text).as_deref(), want, "{text}");
        }
    }
}
