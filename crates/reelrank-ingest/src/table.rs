//! Streaming reader for delimited files (CSV, MovieLens' pipe- and tab-separated files).
//!
//! Imports read each file twice: a first pass validates every row, a second writes in batches. Memory
//! stays constant whatever the file size, and a bad row anywhere means nothing of the file is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use reelrank_core::{FieldError, Validate};

use crate::ImportError;

/// How a file's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Strict UTF-8: other bytes are an error naming the column.
    Utf8,
    /// ISO 8859-1, which ml-100k's `u.item` uses.
    Latin1,
}

/// The layout of one file.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    pub delimiter: u8,
    /// Standard CSV quoting; MovieLens' `|`/tab files contain bare quotes and use none.
    pub quoting: bool,
    pub encoding: Encoding,
    /// Column names for files without a header row; `None` reads the header from the file.
    pub columns: Option<&'static [&'static str]>,
}

impl Format {
    /// Standard CSV with a header row.
    pub fn csv() -> Format {
        Format { delimiter: b',', quoting: true, encoding: Encoding::Utf8, columns: None }
    }
}

/// One row, with access to its cells by column name.
pub(crate) struct Row<'a> {
    columns: &'a HashMap<String, usize>,
    names: &'a [String],
    cells: Vec<String>,
}

impl Row<'_> {
    /// The cell of `column`, `None` when the column is absent or the cell empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        let index = *self.columns.get(column)?;
        self.cells.get(index).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// The cell of a required column.
    pub fn require(&self, column: &str) -> Result<&str, FieldError> {
        self.get(column).ok_or_else(|| FieldError::new(column, "required"))
    }

    /// Parses an optional cell with `FromStr`.
    pub fn parse<T: std::str::FromStr>(&self, column: &str) -> Result<Option<T>, FieldError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(column)
            .map(|text| text.parse::<T>().map_err(|e| FieldError::new(column, format!("`{text}`: {e}"))))
            .transpose()
    }

    /// Every (column name, cell) pair with a non-empty cell.
    pub fn cells(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().zip(&self.cells).map(|(n, c)| (n.as_str(), c.trim())).filter(|(_, c)| !c.is_empty())
    }
}

/// Parses one row into a record.
pub(crate) type Parse<'a, T> = &'a dyn Fn(&Row) -> Result<T, FieldError>;

struct Reader<'p, T> {
    path: PathBuf,
    format: Format,
    reader: csv::Reader<fs_err::File>,
    columns: HashMap<String, usize>,
    names: Vec<String>,
    parse: Parse<'p, T>,
    record: csv::ByteRecord,
}

impl<'p, T: Validate> Reader<'p, T> {
    fn open(path: &Path, format: &Format, parse: Parse<'p, T>) -> Result<Reader<'p, T>, ImportError> {
        let file = fs_err::File::open(path).map_err(|e| ImportError::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(format.delimiter)
            .quoting(format.quoting)
            .has_headers(format.columns.is_none())
            .flexible(true)
            .from_reader(file);
        let names: Vec<String> = match format.columns {
            Some(names) => names.iter().map(|n| n.to_string()).collect(),
            None => reader
                .headers()
                .map_err(|e| ImportError::row(path, 1, "", e.to_string()))?
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
                .collect(),
        };
        let columns = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Ok(Reader {
            path: path.to_owned(),
            format: format.clone(),
            reader,
            columns,
            names,
            parse,
            record: csv::ByteRecord::new(),
        })
    }

    /// Up to `max` valid records; an empty vector at the end of the file.
    fn next_batch(&mut self, max: usize) -> Result<Vec<T>, ImportError> {
        let mut batch = Vec::with_capacity(max.min(65_536));
        while batch.len() < max {
            let more = self.reader.read_byte_record(&mut self.record).map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                ImportError::row(&self.path, line, "", e.to_string())
            })?;
            if !more {
                break;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let mut cells = Vec::with_capacity(self.record.len());
            for (i, bytes) in self.record.iter().enumerate() {
                cells.push(match self.format.encoding {
                    Encoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
                    Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| {
                        let column = self.names.get(i).map_or("", String::as_str);
                        ImportError::row(&self.path, line, column, "not valid UTF-8")
                    })?,
                });
            }
            let row = Row { columns: &self.columns, names: &self.names, cells };
            let record =
                (self.parse)(&row).map_err(|e| ImportError::row(&self.path, line, &e.field, e.message))?;
            if let Some(problem) = record.validate().into_iter().next() {
                return Err(ImportError::row(&self.path, line, &problem.field, problem.message));
            }
            batch.push(record);
        }
        Ok(batch)
    }
}

/// Validates every row of `path`, then hands the records to `write` in batches of `batch_rows`.
/// Returns the number of records written.
pub(crate) async fn import_file<T: Validate>(
    path: &Path,
    format: &Format,
    parse: Parse<'_, T>,
    batch_rows: usize,
    progress: &ProgressBar,
    mut write: impl AsyncFnMut(Vec<T>) -> Result<(), ImportError>,
) -> Result<u64, ImportError> {
    progress.set_message(format!("checking {}", path.display()));
    let mut total = 0u64;
    let mut reader = Reader::open(path, format, parse)?;
    loop {
        let n = reader.next_batch(batch_rows)?.len();
        if n == 0 {
            break;
        }
        total += n as u64;
        progress.tick();
    }
    progress.set_message(format!("writing {}", path.display()));
    progress.set_length(total);
    progress.set_position(0);
    let mut reader = Reader::open(path, format, parse)?;
    loop {
        let batch = reader.next_batch(batch_rows)?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len() as u64;
        write(batch).await?;
        progress.inc(n);
    }
    Ok(total)
}
