//! The warehouse boundary's error: whether trying again can help decides what the sink does
//! (back off and retry the batch, or dead-letter it and move on).

use clickhouse::error::Error as ClickHouseError;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// ClickHouse did not answer, timed out, or failed for a reason of its own (overload, too
    /// many parts, memory). The same request can succeed later.
    #[error(
        "ClickHouse is unavailable for {what}: {source} (retryable: check that the server runs \
         and answers on its HTTP port)"
    )]
    Unavailable {
        what: String,
        #[source]
        source: ClickHouseError,
    },
    /// ClickHouse refused the data or the statement as malformed. Sending it again fails again.
    #[error(
        "ClickHouse rejected {what}: {source} (not retryable: the rows or the SQL do not match \
         the schema; run the migrations of this version, or fix the data)"
    )]
    Rejected {
        what: String,
        #[source]
        source: ClickHouseError,
    },
    /// Wrong user, password, database or table, or a user without the right to do this.
    #[error(
        "ClickHouse refused {what} because of the configuration: {source} (not retryable: check \
         the URL, user, password and database, and that the migrations ran)"
    )]
    Misconfigured {
        what: String,
        #[source]
        source: ClickHouseError,
    },
    #[error("no report named {0:?}; `touchstream report` without a name lists them")]
    UnknownReport(String),
    /// A report answered with something that is not the JSONCompact it was asked for.
    #[error("report {report} returned an unreadable answer: {reason}")]
    UnreadableReport { report: String, reason: String },
    /// A migration file this build carries is malformed (a bug in the release, not the server).
    #[error("migration {migration} is malformed: {reason}")]
    BadMigration { migration: String, reason: String },
}

impl WarehouseError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Sorts a client error by whether trying again can help. `what` names the request
    /// ("an insert of 500 rows into events") for the message.
    pub(crate) fn classify(what: String, source: ClickHouseError) -> Self {
        match Kind::of(&source) {
            Kind::Unavailable => Self::Unavailable { what, source },
            Kind::Rejected => Self::Rejected { what, source },
            Kind::Misconfigured => Self::Misconfigured { what, source },
        }
    }

    /// The ClickHouse exception code (`Code: 60, …`) of a server-side error, if there is one.
    pub fn server_code(&self) -> Option<u32> {
        match self {
            Self::Unavailable { source, .. }
            | Self::Rejected { source, .. }
            | Self::Misconfigured { source, .. } => server_code(source),
            _ => None,
        }
    }
}

enum Kind {
    Unavailable,
    Rejected,
    Misconfigured,
}

impl Kind {
    fn of(error: &ClickHouseError) -> Self {
        match error {
            ClickHouseError::Network(_) | ClickHouseError::TimedOut | ClickHouseError::Other(_) => {
                Self::Unavailable
            }
            ClickHouseError::BadResponse(_) => match server_code(error) {
                Some(code) if REJECTED_CODES.contains(&code) => Self::Rejected,
                Some(code) if MISCONFIGURED_CODES.contains(&code) => Self::Misconfigured,
                // Overload, memory, too many parts, a replica or keeper away, or an HTTP error
                // from a proxy in front: all things that pass.
                _ => Self::Unavailable,
            },
            ClickHouseError::Unsupported(_) | ClickHouseError::InvalidParams(_) => {
                Self::Misconfigured
            }
            // Serialising or reading rows failed on this side: the data does not fit the types.
            _ => Self::Rejected,
        }
    }
}

/// Server errors that mean the request itself is wrong (ClickHouse's ErrorCodes.cpp).
const REJECTED_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    215, // NOT_AN_AGGREGATE
    352, // AMBIGUOUS_COLUMN_NAME
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a throwIf guard column refusing a row)
    469, // VIOLATED_CONSTRAINT (a CHECK constraint refusing a row)
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// Server errors that mean the client is pointed at the wrong place or lacks rights.
const MISCONFIGURED_CODES: &[u32] = &[
    60,  // UNKNOWN_TABLE
    81,  // UNKNOWN_DATABASE
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    291, // DATABASE_ACCESS_DENIED
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// ClickHouse starts every exception text with `Code: N` (18.16: `Code: 60, e.displayText() =`,
/// current: `Code: 60. DB::Exception:`); the crate puts that text in `BadResponse`.
fn server_code(error: &ClickHouseError) -> Option<u32> {
    let ClickHouseError::BadResponse(text) = error else {
        return None;
    };
    let rest = &text[text.find("Code:")? + "Code:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> WarehouseError {
        WarehouseError::classify("a test".into(), ClickHouseError::BadResponse(text.into()))
    }

    #[test]
    fn server_errors_are_sorted_by_their_code() {
        let cases = [
            (
                "Code: 27, e.displayText() = DB::Exception: Cannot parse input",
                false,
                Some(27),
            ),
            (
                "Code: 33. DB::Exception: Cannot read all data. (CANNOT_READ_ALL_DATA)",
                false,
                Some(33),
            ),
            (
                "Code: 60, e.displayText() = DB::Exception: Table x.events doesn't exist.",
                false,
                Some(60),
            ),
            (
                "Code: 252. DB::Exception: Too many parts (300).",
                true,
                Some(252),
            ),
            (
                "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded",
                true,
                Some(241),
            ),
            ("503 Service Unavailable", true, None),
        ];
        for (text, retryable, code) in cases {
            let error = bad(text);
            assert_eq!(error.is_retryable(), retryable, "{text}");
            assert_eq!(error.server_code(), code, "{text}");
        }
        assert!(matches!(
            bad("Code: 27, x"),
            WarehouseError::Rejected { .. }
        ));
        assert!(matches!(
            bad("Code: 516. y"),
            WarehouseError::Misconfigured { .. }
        ));
    }

    #[test]
    fn transport_failures_are_retryable_and_bad_rows_are_not() {
        let timeout = WarehouseError::classify("x".into(), ClickHouseError::TimedOut);
        assert!(timeout.is_retryable());
        let serde = WarehouseError::classify("x".into(), ClickHouseError::Custom("bad".into()));
        assert!(!serde.is_retryable());
        assert!(matches!(serde, WarehouseError::Rejected { .. }));
    }
}
