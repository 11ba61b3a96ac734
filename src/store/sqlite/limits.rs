//! Usage limits, usage counters and rate-limit overrides in SQLite.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{corrupt, parse_uuid, SqliteStore};
use crate::store::{
    unix_now, RateOverrideRecord, StoreError, StoredLimits, UsageCounter, UsageLimitRecord,
    UsageRecord, WorkspaceUsage,
};

impl SqliteStore {
    /// Sets a workspace's monthly limit on `counter`; `None` removes it.
    pub fn set_usage_limit(
        &self,
        workspace: Uuid,
        counter: UsageCounter,
        value: Option<u64>,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        match value {
            Some(value) => conn.execute(
                "INSERT INTO usage_limits (workspace_id, limit_type, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id, limit_type) DO UPDATE SET value = excluded.value",
                params![workspace.to_string(), counter.as_str(), to_sql(value)?],
            )?,
            None => conn.execute(
                "DELETE FROM usage_limits WHERE workspace_id = ?1 AND limit_type = ?2",
                params![workspace.to_string(), counter.as_str()],
            )?,
        };
        Ok(())
    }

    /// Sets a workspace's rate-limit override; `None` removes it.
    pub fn set_rate_override(
        &self,
        workspace: Uuid,
        value: Option<RateOverrideRecord>,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        match value {
            Some(record) => conn.execute(
                "INSERT INTO workspace_rate_limits
                     (workspace_id, per_key, per_workspace, period_secs, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (workspace_id) DO UPDATE SET per_key = excluded.per_key,
                     per_workspace = excluded.per_workspace, period_secs = excluded.period_secs,
                     updated_at = excluded.updated_at",
                params![
                    workspace.to_string(),
                    record.per_key,
                    record.per_workspace,
                    record.period.as_secs(),
                    unix_now()
                ],
            )?,
            None => conn.execute(
                "DELETE FROM workspace_rate_limits WHERE workspace_id = ?1",
                params![workspace.to_string()],
            )?,
        };
        Ok(())
    }

    /// Reads a workspace's stored usage in `month` (`YYYY-MM`) with its
    /// limits. Counters reach the store in batches, so this can lag the
    /// gateway's in-memory count by one flush interval; the gateway's
    /// `Limits::current_usage` returns the live count.
    pub fn usage_for_workspace(
        &self,
        workspace: Uuid,
        month: &str,
    ) -> Result<WorkspaceUsage, StoreError> {
        let conn = self.lock();
        let id = workspace.to_string();
        let counter = |name: UsageCounter| -> Result<u64, StoreError> {
            let value: Option<i64> = conn
                .query_row(
                    "SELECT value FROM usage_counters
                     WHERE workspace_id = ?1 AND month = ?2 AND counter = ?3",
                    params![id, month, name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            from_sql("usage_counters", value.unwrap_or(0))
        };
        let limit = |name: UsageCounter| -> Result<Option<u64>, StoreError> {
            let value: Option<i64> = conn
                .query_row(
                    "SELECT value FROM usage_limits WHERE workspace_id = ?1 AND limit_type = ?2",
                    params![id, name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            value.map(|v| from_sql("usage_limits", v)).transpose()
        };
        Ok(WorkspaceUsage {
            workspace_id: workspace,
            month: month.to_string(),
            all_traces: counter(UsageCounter::AllTraces)?,
            extended_traces: counter(UsageCounter::ExtendedTraces)?,
            all_traces_limit: limit(UsageCounter::AllTraces)?,
            extended_traces_limit: limit(UsageCounter::ExtendedTraces)?,
        })
    }
}

pub(super) fn load_limits(conn: &Connection) -> Result<StoredLimits, StoreError> {
    let mut limits = StoredLimits::default();
    let mut stmt =
        conn.prepare_cached("SELECT workspace_id, limit_type, value FROM usage_limits")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (workspace, counter, value) = row?;
        limits.usage.push(UsageLimitRecord {
            workspace_id: parse_uuid("usage_limits", &workspace)?,
            counter: UsageCounter::from_name(&counter)
                .ok_or_else(|| corrupt("usage_limits", "limit_type", &counter))?,
            value: from_sql("usage_limits", value)?,
        });
    }

    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, per_key, per_workspace, period_secs FROM workspace_rate_limits",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<u32>>(1)?,
            r.get::<_, Option<u32>>(2)?,
            r.get::<_, u64>(3)?,
        ))
    })?;
    for row in rows {
        let (workspace, per_key, per_workspace, period_secs) = row?;
        limits.rate.push(RateOverrideRecord {
            workspace_id: parse_uuid("workspace_rate_limits", &workspace)?,
            per_key,
            per_workspace,
            period: Duration::from_secs(period_secs),
        });
    }
    Ok(limits)
}

pub(super) fn load_usage(conn: &Connection, month: &str) -> Result<Vec<UsageRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, counter, value FROM usage_counters WHERE month = ?1",
    )?;
    let rows = stmt.query_map(params![month], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut records = Vec::new();
    for row in rows {
        let (workspace, counter, value) = row?;
        records.push(UsageRecord {
            workspace_id: parse_uuid("usage_counters", &workspace)?,
            month: month.to_string(),
            counter: UsageCounter::from_name(&counter)
                .ok_or_else(|| corrupt("usage_counters", "counter", &counter))?,
            value: from_sql("usage_counters", value)?,
        });
    }
    Ok(records)
}

pub(super) fn add_usage(conn: &mut Connection, deltas: &[UsageRecord]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        // A workspace deleted since the count began has no row to add to,
        // and its usage is dropped with it.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage_counters (workspace_id, month, counter, value)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = ?1)
             ON CONFLICT (workspace_id, month, counter) DO UPDATE SET value = value + excluded.value",
        )?;
        for delta in deltas {
            stmt.execute(params![
                delta.workspace_id.to_string(),
                delta.month,
                delta.counter.as_str(),
                to_sql(delta.value)?
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn to_sql(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{value} exceeds 2^63 - 1")))
}

fn from_sql(table: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(table, "value", &value.to_string()))
}
