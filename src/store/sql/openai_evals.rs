//! [`EvalStore`] for every [`Dialect`]: one row per eval, eval run or file, listed by the
//! order of insertion (`seq`).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Row as _, Type};

use super::{Conn, Dialect, Row, Value, from_json, json_text};
use crate::model::{EvalKind, EvalObject, EvalObjectQuery, ListOrder};
use crate::store::{EvalStore, StoreError, StoreResult};

fn object_of<D: Dialect>(row: &Row<D>, with_content: bool) -> StoreResult<EvalObject>
where
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    let kind: String = row.try_get(0)?;
    let body: String = row.try_get(5)?;
    Ok(EvalObject {
        kind: EvalKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown eval object kind {kind}")))?,
        id: row.try_get(1)?,
        parent_id: row.try_get(2)?,
        status: row.try_get(3)?,
        created_at: row.try_get(4)?,
        body: from_json(&body)?,
        content: if with_content { row.try_get(6)? } else { None },
    })
}

const COLUMNS: &str = "kind, id, parent_id, status, created_at, body";

#[async_trait]
impl<D> EvalStore for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
{
    async fn insert_eval_object(&self, object: &EvalObject) -> StoreResult<()> {
        let body = json_text(&object.body)?;
        let mut write = self.begin_one().await?;
        sqlx::query(
            "INSERT INTO openai_objects (kind, id, parent_id, status, created_at, body, content) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(object.kind.as_str())
        .bind(object.id.as_str())
        .bind(object.parent_id.clone())
        .bind(object.status.clone())
        .bind(object.created_at)
        .bind(body)
        .bind(object.content.clone())
        .execute(write.conn())
        .await?;
        write.commit().await
    }

    async fn update_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        status: Option<&str>,
        body: &serde_json::Value,
    ) -> StoreResult<bool> {
        let body = json_text(body)?;
        let mut write = self.begin_one().await?;
        let result = sqlx::query(
            "UPDATE openai_objects SET status = $1, body = $2 WHERE kind = $3 AND id = $4",
        )
        .bind(status.map(str::to_owned))
        .bind(body)
        .bind(kind.as_str())
        .bind(id)
        .execute(write.conn())
        .await?;
        write.commit().await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn get_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        with_content: bool,
    ) -> StoreResult<Option<EvalObject>> {
        let content = if with_content { "content" } else { "NULL" };
        let sql =
            format!("SELECT {COLUMNS}, {content} FROM openai_objects WHERE kind = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| object_of::<D>(&row, with_content))
            .transpose()
    }

    async fn list_eval_objects(&self, query: &EvalObjectQuery) -> StoreResult<Vec<EvalObject>> {
        // Placeholders are numbered as the optional filters are added.
        let mut sql = format!("SELECT {COLUMNS} FROM openai_objects WHERE kind = $1");
        let mut next = 2;
        if query.parent_id.is_some() {
            sql.push_str(&format!(" AND parent_id = ${next}"));
            next += 1;
        }
        if query.status.is_some() {
            sql.push_str(&format!(" AND status = ${next}"));
            next += 1;
        }
        let (compare, direction) = match query.order {
            ListOrder::Asc => (">", "ASC"),
            ListOrder::Desc => ("<", "DESC"),
        };
        if query.after.is_some() {
            sql.push_str(&format!(
                " AND seq {compare} COALESCE((SELECT seq FROM openai_objects WHERE kind = $1 \
                 AND id = ${next}), {})",
                if query.order == ListOrder::Asc {
                    "0"
                } else {
                    "9223372036854775807"
                }
            ));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY seq {direction} LIMIT ${next}"));
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(query.kind.as_str());
        if let Some(parent) = &query.parent_id {
            statement = statement.bind(parent.as_str());
        }
        if let Some(status) = &query.status {
            statement = statement.bind(status.as_str());
        }
        if let Some(after) = &query.after {
            statement = statement.bind(after.as_str());
        }
        let rows = statement
            .bind(i64::from(query.limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| object_of::<D>(row, false)).collect()
    }

    async fn delete_eval_object(&self, kind: EvalKind, id: &str) -> StoreResult<bool> {
        let mut write = self.begin().await?;
        let result = sqlx::query("DELETE FROM openai_objects WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(write.conn())
            .await?;
        let found = D::rows_affected(&result) > 0;
        if found {
            sqlx::query("DELETE FROM openai_objects WHERE parent_id = $1")
                .bind(id)
                .execute(write.conn())
                .await?;
        }
        write.commit().await?;
        Ok(found)
    }
}
