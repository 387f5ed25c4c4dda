//! Order storage: every SQL statement of the service lives here.
//!
//! Statements use `$1, $2, ...` placeholders, each once and in order, and portable SQL (row-value
//! comparison, `RETURNING`), so they run unchanged on SQLite and PostgreSQL through the `Any`
//! driver. The suite in `tests/repository.rs` runs against SQLite and, when
//! `TEST_DATABASE_URL` names a PostgreSQL server, against PostgreSQL.

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row};

use crate::domain::{NewOrder, Order, OrderId, Page, PageRequest, Status};
use crate::error::Error;

/// Whose orders a listing shows.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Only the orders of this owner (`sub`).
    Owner(&'a str),
    /// Every order (administrators).
    All,
}

const COLUMNS: &str = "id, owner, item, quantity, status, created_at, cancelled_at";

/// The orders table.
#[derive(Debug, Clone)]
pub struct OrderRepository {
    pool: AnyPool,
}

impl OrderRepository {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a new placed order of `owner`, created at `now` (Unix seconds).
    pub async fn create(&self, owner: &str, new: NewOrder, now: i64) -> Result<Order, Error> {
        let order = Order {
            id: OrderId::generate(),
            owner: owner.to_owned(),
            item: new.item,
            quantity: new.quantity,
            status: Status::Placed,
            created_at: now,
            cancelled_at: None,
        };
        sqlx::query(
            "INSERT INTO orders (id, owner, item, quantity, status, created_at, cancelled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(order.id.to_string())
        .bind(&order.owner)
        .bind(&order.item)
        .bind(i64::from(order.quantity))
        .bind(order.status.as_str())
        .bind(order.created_at)
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(order)
    }

    /// The order with this id, whoever owns it.
    pub async fn get(&self, id: OrderId) -> Result<Option<Order>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// Marks a placed order cancelled at `now`. `None` if the order does not exist or is not
    /// placed any more (the update is conditional, so two concurrent cancels cannot both win).
    pub async fn cancel(&self, id: OrderId, now: i64) -> Result<Option<Order>, Error> {
        let sql = format!(
            "UPDATE orders SET status = $1, cancelled_at = $2 \
             WHERE id = $3 AND status = $4 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(Status::Cancelled.as_str())
            .bind(now)
            .bind(id.to_string())
            .bind(Status::Placed.as_str())
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// One page of orders, newest first.
    pub async fn list(&self, scope: Scope<'_>, page: PageRequest) -> Result<Page, Error> {
        // Before any real order: the first page is "everything older than the end of time".
        let after = page.after.map_or((i64::MAX, String::new()), |cursor| {
            (cursor.created_at, cursor.id.to_string())
        });
        // One row more than asked tells whether another page follows.
        let limit = i64::from(page.size) + 1;
        let rows = match scope {
            Scope::Owner(owner) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM orders WHERE owner = $1 AND (created_at, id) < ($2, $3) \
                     ORDER BY created_at DESC, id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(owner)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(limit)
                    .fetch_all(&mut *self.connection().await?)
                    .await?
            }
            Scope::All => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM orders WHERE (created_at, id) < ($1, $2) \
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                );
                sqlx::query(&sql)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(limit)
                    .fetch_all(&mut *self.connection().await?)
                    .await?
            }
        };
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let size = usize::try_from(page.size).unwrap_or(usize::MAX);
        let next = if orders.len() > size {
            orders.truncate(size);
            orders.last().map(Order::cursor)
        } else {
            None
        };
        Ok(Page { orders, next })
    }

    /// A connection from the pool. Failing to get one (the database is down, refuses
    /// connections, or every connection is busy until the acquire timeout) is
    /// [`Error::Unavailable`]: worth a retry, unlike a failed statement.
    async fn connection(&self) -> Result<PoolConnection<Any>, Error> {
        self.pool.acquire().await.map_err(Error::Unavailable)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }
}

fn order_from_row(row: &AnyRow) -> Result<Order, Error> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let quantity: i64 = row.try_get("quantity")?;
    Ok(Order {
        id: OrderId::parse(&id).map_err(|_| Error::Corrupt(format!("order id {id:?}")))?,
        owner: row.try_get("owner")?,
        item: row.try_get("item")?,
        quantity: i32::try_from(quantity)
            .map_err(|_| Error::Corrupt(format!("quantity of order {id}")))?,
        status: Status::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("status of order {id}")))?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}
