//! Orders as the service understands them, and the validation that turns wire requests into
//! them. Everything here is pure: no I/O, no clock, easy to test.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::Error;

/// Longest item name accepted, in characters, after trimming.
pub const MAX_ITEM_CHARS: usize = 200;
/// Smallest and largest quantity of one order.
pub const MIN_QUANTITY: i32 = 1;
pub const MAX_QUANTITY: i32 = 1000;
/// Page size used when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The life cycle of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Placed,
    Cancelled,
}

impl Status {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored value; `None` for anything this version does not know.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "placed" => Some(Status::Placed),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub owner: String,
    pub item: String,
    pub quantity: i32,
    pub status: Status,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` while the order is placed.
    pub cancelled_at: Option<i64>,
}

impl Order {
    /// Where this order sits in the newest-first listing.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

impl From<Order> for proto::orders::v1::Order {
    fn from(order: Order) -> Self {
        let status = match order.status {
            Status::Placed => proto::orders::v1::OrderStatus::Placed,
            Status::Cancelled => proto::orders::v1::OrderStatus::Cancelled,
        };
        Self {
            id: order.id.to_string(),
            owner: order.owner,
            item: order.item,
            quantity: order.quantity,
            status: status.into(),
            created_at: order.created_at,
            cancelled_at: order.cancelled_at.unwrap_or(0),
        }
    }
}

/// The identifier of an order: a UUID, always handled in its lowercase hyphenated form so that
/// one order has exactly one spelling in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new, time-ordered identifier (UUIDv7).
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses a caller-supplied identifier.
    pub fn parse(value: &str) -> Result<Self, Error> {
        Uuid::try_parse(value)
            .map(Self)
            .map_err(|_| Error::InvalidArgument("id must be a UUID"))
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A validated request to create an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Trimmed, 1 to [`MAX_ITEM_CHARS`] characters, no control characters.
    pub item: String,
    /// [`MIN_QUANTITY`] to [`MAX_QUANTITY`].
    pub quantity: i32,
}

impl NewOrder {
    pub fn parse(item: &str, quantity: i32) -> Result<Self, Error> {
        let item = item.trim();
        if item.is_empty() {
            return Err(Error::InvalidArgument("item must not be blank"));
        }
        if item.chars().count() > MAX_ITEM_CHARS {
            return Err(Error::InvalidArgument(
                "item must be at most 200 characters",
            ));
        }
        // Control characters have no place in an item name and would end up in logs and UIs.
        if item.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(
                "item must not contain control characters",
            ));
        }
        if !(MIN_QUANTITY..=MAX_QUANTITY).contains(&quantity) {
            return Err(Error::InvalidArgument(
                "quantity must be between 1 and 1000",
            ));
        }
        Ok(Self {
            item: item.to_owned(),
            quantity,
        })
    }
}

/// A position in the newest-first listing: orders strictly older than this come next.
///
/// Ordering is by `(created_at, id)` descending; the id breaks ties within a second, which
/// makes the order total and the cursor stable under concurrent inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: OrderId,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_LEN: usize = 1 + 8 + 16;

impl Cursor {
    /// The opaque page token handed to callers: base64url (no padding) of a version byte, the
    /// big-endian timestamp and the 16 bytes of the id.
    ///
    /// The token is not signed: it only moves a position inside the listing the caller is
    /// allowed to see (the owner filter is applied on every page), so forging one gains nothing.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; CURSOR_LEN];
        bytes[0] = CURSOR_VERSION;
        bytes[1..9].copy_from_slice(&self.created_at.to_be_bytes());
        bytes[9..].copy_from_slice(self.id.0.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a page token produced by [`Cursor::encode`]; anything else is INVALID_ARGUMENT.
    pub fn decode(token: &str) -> Result<Self, Error> {
        const BAD: Error = Error::InvalidArgument("page_token is not valid");
        // A well-formed token is 34 characters; refuse long input before decoding it.
        if token.len() > 64 {
            return Err(BAD);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| BAD)?;
        let bytes: [u8; CURSOR_LEN] = bytes.try_into().map_err(|_| BAD)?;
        if bytes[0] != CURSOR_VERSION {
            return Err(BAD);
        }
        let mut created_at = [0u8; 8];
        created_at.copy_from_slice(&bytes[1..9]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[9..]);
        Ok(Self {
            created_at: i64::from_be_bytes(created_at),
            id: OrderId(Uuid::from_bytes(id)),
        })
    }
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1 to [`MAX_PAGE_SIZE`].
    pub size: u32,
    /// `None` for the first page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn parse(page_size: u32, page_token: &str) -> Result<Self, Error> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(Error::InvalidArgument("page_size must be at most 100"));
            }
            n => n,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(Cursor::decode(page_token)?)
        };
        Ok(Self { size, after })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub orders: Vec<Order>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<impl std::fmt::Debug, Error>) -> bool {
        matches!(result, Err(Error::InvalidArgument(_)))
    }

    #[test]
    fn item_is_trimmed_and_bounded() {
        let order = NewOrder::parse("  book  ", 2).unwrap();
        assert_eq!(order.item, "book");
        assert_eq!(order.quantity, 2);

        assert!(invalid(NewOrder::parse("", 1)));
        assert!(invalid(NewOrder::parse(" \t\n ", 1)));
        assert!(NewOrder::parse(&"é".repeat(200), 1).is_ok());
        assert!(NewOrder::parse(&format!("  {}  ", "x".repeat(200)), 1).is_ok());
        assert!(invalid(NewOrder::parse(&"é".repeat(201), 1)));
        assert!(invalid(NewOrder::parse("bo\0ok", 1)));
    }

    #[test]
    fn quantity_is_bounded() {
        assert!(NewOrder::parse("book", 1).is_ok());
        assert!(NewOrder::parse("book", 1000).is_ok());
        for quantity in [0, -1, 1001, i32::MIN, i32::MAX] {
            assert!(invalid(NewOrder::parse("book", quantity)), "{quantity}");
        }
    }

    #[test]
    fn ids_are_uuids_in_one_spelling() {
        let id = OrderId::generate();
        let upper = id.to_string().to_uppercase();
        assert_eq!(OrderId::parse(&upper).unwrap().to_string(), id.to_string());
        for bad in ["", "42", "not-a-uuid", "../../etc/passwd", "' OR 1=1 --"] {
            assert!(invalid(OrderId::parse(bad)), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_time_ordered() {
        let first = OrderId::generate();
        let second = OrderId::generate();
        assert!(second > first);
        assert!(second.to_string() > first.to_string());
    }

    #[test]
    fn page_token_round_trips() {
        let cursor = Cursor {
            created_at: 1_700_000_000,
            id: OrderId::generate(),
        };
        let token = cursor.encode();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&token).unwrap(), cursor);
    }

    #[test]
    fn bad_page_tokens_are_invalid_arguments() {
        let good = Cursor {
            created_at: 1,
            id: OrderId::generate(),
        }
        .encode();
        let padded = format!("{good}==");
        let truncated = &good[..good.len() - 2];
        let mut wrong_version = good.clone().into_bytes();
        wrong_version[0] = b'B';
        let wrong_version = String::from_utf8(wrong_version).unwrap();
        for bad in [
            "!!!",
            "abc",
            padded.as_str(),
            truncated,
            wrong_version.as_str(),
            &"A".repeat(1000),
        ] {
            assert!(invalid(Cursor::decode(bad)), "{bad}");
        }
    }

    #[test]
    fn page_size_defaults_and_is_bounded() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(1, "").unwrap().size, 1);
        assert_eq!(PageRequest::parse(100, "").unwrap().size, 100);
        assert!(invalid(PageRequest::parse(101, "")));
        assert!(invalid(PageRequest::parse(u32::MAX, "")));
        assert!(invalid(PageRequest::parse(10, "garbage")));
    }

    #[test]
    fn status_round_trips() {
        for status in [Status::Placed, Status::Cancelled] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("shipped"), None);
    }
}
