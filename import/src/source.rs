//! The file a clinic exports from its old system, read a record at a time: NDJSON of v1 records,
//! or CSV through a column mapping (`mapping.rs`); plain or compressed with gzip or zstd (told by
//! the file's first bytes, not its name). How far into the file the reading is, in the file's own
//! bytes, drives the progress bar.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::mapping::{Bound, Mapping};
use crate::ImportError;

/// How the records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One v1 record (a JSON object) a line.
    Ndjson,
    /// A header row, then one record a row, read through a column mapping.
    Csv,
}

impl Format {
    /// The format a file's name says: `.csv` (also compressed, `.csv.gz`, `.csv.zst`) is CSV.
    pub fn of(path: &Path) -> Format {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let name = name.trim_end_matches(".gz").trim_end_matches(".zst").trim_end_matches(".zstd");
        if name.ends_with(".csv") {
            Format::Csv
        } else {
            Format::Ndjson
        }
    }
}

/// One record of the file: where it starts, and its JSON or why it could not be read.
pub struct Row {
    pub line: u64,
    pub record: Result<Vec<u8>, String>,
}

/// The records of an export, in either format.
pub enum Rows {
    Ndjson {
        source: Source,
        line: Vec<u8>,
    },
    Csv {
        reader: Box<csv::Reader<Box<dyn BufRead + Send>>>,
        bound: Bound,
        row: csv::StringRecord,
        read: Arc<AtomicU64>,
    },
}

impl Rows {
    pub fn open(source: Source, format: Format, mapping: Option<&Mapping>) -> Result<Rows, ImportError> {
        match (format, mapping) {
            (Format::Ndjson, _) => Ok(Rows::Ndjson { source, line: Vec::new() }),
            (Format::Csv, None) => Err(ImportError::Usage("a CSV export needs --mapping FILE".into())),
            (Format::Csv, Some(mapping)) => {
                let read = source.progress();
                let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(source.lines);
                let header = reader
                    .headers()
                    .map_err(|e| ImportError::Usage(format!("the CSV export's header row cannot be read: {e}")))?
                    .clone();
                let bound = mapping.bind(&header)?;
                Ok(Rows::Csv { reader: Box::new(reader), bound, row: csv::StringRecord::new(), read })
            }
        }
    }

    /// The next record, or `None` at the end of the file. Blank NDJSON lines are skipped.
    pub fn next_row(&mut self) -> Result<Option<Row>, ImportError> {
        match self {
            Rows::Ndjson { source, line } => loop {
                let more = source.next_line(line).map_err(|cause| ImportError::File {
                    path: "the export".into(),
                    cause: format!("could not be read after line {}: {cause}", source.line),
                })?;
                if !more {
                    return Ok(None);
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Some(Row { line: source.line, record: Ok(line.clone()) }));
                }
            },
            Rows::Csv { reader, bound, row, .. } => match reader.read_record(row) {
                Ok(false) => Ok(None),
                Ok(true) => {
                    let line = row.position().map_or(0, csv::Position::line);
                    Ok(Some(Row { line, record: Ok(bound.record(row).to_string().into_bytes()) }))
                }
                Err(error) => {
                    let line = error.position().map_or(0, csv::Position::line);
                    let reason = match error.kind() {
                        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                            format!("the row has {len} fields where the header has {expected_len}")
                        }
                        csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".to_owned(),
                        _ => {
                            return Err(ImportError::File {
                                path: "the export".into(),
                                cause: format!("could not be read as CSV: {error}"),
                            })
                        }
                    };
                    Ok(Some(Row { line, record: Err(reason) }))
                }
            },
        }
    }

    /// A counter of the file's bytes read, for the progress bar on another thread.
    pub fn progress(&self) -> Arc<AtomicU64> {
        match self {
            Rows::Ndjson { source, .. } => source.progress(),
            Rows::Csv { read, .. } => read.clone(),
        }
    }

    /// The number of the last line read.
    pub fn line(&self) -> u64 {
        match self {
            Rows::Ndjson { source, .. } => source.line,
            Rows::Csv { reader, .. } => reader.position().line().saturating_sub(1),
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How the file is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// An open export, read as lines.
pub struct Source {
    lines: Box<dyn BufRead + Send>,
    /// The file's bytes read so far (compressed bytes for a compressed file).
    read: Arc<AtomicU64>,
    /// The file's size in bytes.
    pub size: u64,
    pub compression: Compression,
    /// The number of the last line read (from 1).
    pub line: u64,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source, ImportError> {
        let file = File::open(path).map_err(|cause| ImportError::file(path, cause))?;
        let size = file.metadata().map_err(|cause| ImportError::file(path, cause))?.len();
        let read = Arc::new(AtomicU64::new(0));
        let mut counted = BufReader::with_capacity(256 * 1024, Counted { inner: file, read: read.clone() });
        let head = counted.fill_buf().map_err(|cause| ImportError::file(path, cause))?;
        let compression = if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        };
        let lines: Box<dyn BufRead + Send> = match compression {
            Compression::None => Box::new(counted),
            // Several gzip members one after another are one file (as `cat a.gz b.gz` makes).
            Compression::Gzip => {
                Box::new(BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(counted)))
            }
            Compression::Zstd => {
                let decoder = ruzstd::decoding::StreamingDecoder::new(counted)
                    .map_err(|cause| ImportError::file(path, format!("not a readable zstd file: {cause}")))?;
                Box::new(BufReader::with_capacity(256 * 1024, decoder))
            }
        };
        Ok(Source { lines, read, size, compression, line: 0 })
    }

    /// A counter of the file's bytes read, for the progress bar on another thread.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    /// The next line into `line` (without its line end), or `false` at the end of the file.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        line.clear();
        if self.lines.read_until(b'\n', line)? == 0 {
            return Ok(false);
        }
        self.line += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        Ok(true)
    }
}

/// A reader that counts the bytes it reads.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines_of(path: &Path) -> Vec<String> {
        let mut source = Source::open(path).unwrap();
        let mut line = Vec::new();
        let mut out = Vec::new();
        while source.next_line(&mut line).unwrap() {
            out.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(source.line as usize, out.len());
        out
    }

    #[test]
    fn plain_gzip_and_zstd_read_the_same_lines_and_crlf_ends_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}";
        let plain = dir.path().join("records.ndjson");
        std::fs::write(&plain, text).unwrap();
        let gzipped = dir.path().join("records.ndjson.gz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&gzipped).unwrap(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        let zstd = dir.path().join("records.ndjson.zst");
        let compressed =
            ruzstd::encoding::compress_to_vec(text.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest);
        std::fs::write(&zstd, compressed).unwrap();
        let expected = vec!["{\"a\":1}", "", "{\"b\":2}", "{\"c\":3}"];
        assert_eq!(lines_of(&plain), expected);
        assert_eq!(Source::open(&gzipped).unwrap().compression, Compression::Gzip);
        assert_eq!(lines_of(&gzipped), expected);
        assert_eq!(Source::open(&zstd).unwrap().compression, Compression::Zstd);
        assert_eq!(lines_of(&zstd), expected);
    }

    #[test]
    fn a_file_that_only_looks_compressed_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake.zst");
        std::fs::write(&fake, [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]).unwrap();
        let error = Source::open(&fake).err().expect("refused").to_string();
        assert!(error.contains("zstd"), "{error}");
    }
}
