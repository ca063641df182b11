use serde::{Deserialize, Serialize};

/// Where a table's reading stands: resume reads the row right after it.
///
/// For file sources this is the index of the file in the table's sorted file
/// list, the byte offset in the (decompressed) file and the number of records
/// already read from that file. A position at `file == files.len()` means the
/// table has been read to the end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Index into the table's sorted file list.
    pub file: u32,
    /// Byte offset of the next record in that file (decompressed bytes).
    pub byte: u64,
    /// Records of that file consumed so far (header excluded).
    pub record: u64,
    /// 1-based physical line of the next record.
    pub line: u64,
    /// Database sources: the sealed key of the last row read (keyset resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The source rows one object holds, from `first` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRange {
    /// Position of the first row.
    pub first: Position,
    /// Position after the last row.
    pub end: Position,
}
