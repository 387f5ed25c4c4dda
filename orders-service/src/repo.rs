//! Order storage: every SQL statement of the service lives here.
//!
//! Statements use `$1, $2, ...` placeholders, each once and in order, and portable SQL (row-value
//! comparison, `RETURNING`), so they run unchanged on SQLite and PostgreSQL through the `Any`
//! driver.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

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
        .execute(&self.pool)
        .await?;
        Ok(order)
    }

    /// The order with this id, whoever owns it.
    pub async fn get(&self, id: OrderId) -> Result<Option<Order>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
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
                    .fetch_all(&self.pool)
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
                    .fetch_all(&self.pool)
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

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn repository() -> (OrderRepository, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/orders.db", dir.path().display());
        let pool = shared::db::connect(&url, 2).await.unwrap();
        crate::app::MIGRATOR.run(&pool).await.unwrap();
        (OrderRepository::new(pool), dir)
    }

    fn new_order(item: &str) -> NewOrder {
        NewOrder::parse(item, 1).unwrap()
    }

    #[tokio::test]
    async fn create_get_cancel() {
        let (repo, _dir) = repository().await;
        let order = repo.create("alice", new_order("book"), 100).await.unwrap();
        assert_eq!(repo.get(order.id).await.unwrap(), Some(order.clone()));

        let cancelled = repo.cancel(order.id, 200).await.unwrap().unwrap();
        assert_eq!(cancelled.status, Status::Cancelled);
        assert_eq!(cancelled.cancelled_at, Some(200));
        assert_eq!(repo.cancel(order.id, 300).await.unwrap(), None);
        assert_eq!(repo.cancel(OrderId::generate(), 300).await.unwrap(), None);
        assert_eq!(repo.get(OrderId::generate()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_is_newest_first_and_keyset_paged() {
        let (repo, _dir) = repository().await;
        let mut created = Vec::new();
        // Several orders share a second: the id breaks the tie.
        for (i, at) in [10, 10, 10, 11, 12, 12, 13].into_iter().enumerate() {
            created.push(
                repo.create("alice", new_order(&format!("item {i}")), at)
                    .await
                    .unwrap(),
            );
        }
        repo.create("bob", new_order("other"), 11).await.unwrap();
        created.reverse();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = repo
                .list(Scope::Owner("alice"), PageRequest { size: 3, after })
                .await
                .unwrap();
            assert!(page.orders.len() <= 3);
            seen.extend(page.orders);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, created);

        let all = repo
            .list(
                Scope::All,
                PageRequest {
                    size: 100,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(all.orders.len(), 8);
        assert_eq!(all.next, None);
    }
}
