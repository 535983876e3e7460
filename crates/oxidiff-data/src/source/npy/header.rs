//! The header of a `.npy` file: the Python dict literal NumPy writes (`'descr'`,
//! `'fortran_order'`, `'shape'`), parsed and checked, and its `'descr'` mapped to the element
//! types this reader supports.

use std::fmt;

/// A supported element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dtype {
    U8,
    F32,
    F64,
}

impl Dtype {
    pub(super) fn itemsize(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// Maps a `'descr'` string to a supported type, or says what to convert the array to.
fn parse_dtype(descr: &str) -> Result<Dtype, String> {
    match descr {
        "|u1" | "u1" | "<u1" => return Ok(Dtype::U8),
        "<f4" => return Ok(Dtype::F32),
        "<f8" => return Ok(Dtype::F64),
        _ => {}
    }
    let supported = "supported are '|u1' (unsigned bytes), '<f4' and '<f8' (little-endian floats)";
    let hint = if descr.contains('O') {
        "object arrays hold pickled Python objects, not numbers; convert with arr.astype(np.float32)"
    } else if descr.starts_with('>') {
        "the array is big-endian; convert with arr.astype(arr.dtype.newbyteorder('<'))"
    } else {
        "convert with arr.astype(np.uint8) or arr.astype(np.float32) before saving"
    };
    Err(format!(
        "dtype '{descr}' is not supported; {supported}: {hint}"
    ))
}

/// What the header dict says, checked.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) descr: String,
    pub(super) dtype: Dtype,
    pub(super) fortran_order: bool,
    pub(super) shape: Vec<usize>,
}

/// Parses and checks the header dict; errors are messages without the path.
pub(super) fn parse_header(text: &str) -> Result<Header, String> {
    let shown = || {
        let t = text.trim_end();
        if t.chars().count() > 200 {
            format!("{}…", t.chars().take(200).collect::<String>())
        } else {
            t.to_string()
        }
    };
    let value = Parser::new(text)
        .parse_all()
        .map_err(|e| format!("malformed header {:?}: {e}", shown()))?;
    let Value::Dict(entries) = value else {
        return Err(format!("malformed header {:?}: not a dict", shown()));
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let Value::Str(key) = key else {
            return Err(format!(
                "malformed header {:?}: key {key} is not a string",
                shown()
            ));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran_order,
            "shape" => &mut shape,
            _ => continue, // Unknown keys carry nothing this reader needs.
        };
        if slot.replace(value).is_some() {
            return Err(format!(
                "malformed header {:?}: key '{key}' appears twice",
                shown()
            ));
        }
    }
    let missing = |key: &str| format!("header {:?} has no '{key}' key", shown());
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => s,
        v @ Value::List(_) => {
            return Err(format!(
                "structured dtype {v} is not supported; save a plain array of '|u1', '<f4' or \
                 '<f8' values"
            ));
        }
        v => return Err(format!("header 'descr' must be a string, found {v}")),
    };
    let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        v => {
            return Err(format!(
                "header 'fortran_order' must be True or False, found {v}"
            ));
        }
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Tuple(items) | Value::List(items) => items
            .into_iter()
            .map(|d| match d {
                Value::Int(d) => Ok(d),
                d => Err(format!("header 'shape' must hold integers, found {d}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        v => return Err(format!("header 'shape' must be a tuple, found {v}")),
    };
    let dtype = parse_dtype(&descr)?;
    Ok(Header {
        descr,
        dtype,
        fortran_order,
        shape,
    })
}

/// The Python literals an NPY header is made of.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(usize),
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, items: &[Value]| -> fmt::Result {
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        match self {
            Self::Str(s) => write!(f, "'{s}'"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(true) => f.write_str("True"),
            Self::Bool(false) => f.write_str("False"),
            Self::None => f.write_str("None"),
            Self::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Self::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Self::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A recursive-descent parser for the Python literals NumPy writes in headers: dicts, tuples,
/// lists, quoted strings, non-negative integers, `True`/`False`/`None`; any whitespace between
/// tokens and trailing commas are accepted. Nesting is bounded so that a hostile header cannot
/// overflow the stack.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 32;

impl Parser {
    fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn parse_all(mut self) -> Result<Value, String> {
        let value = self.value()?;
        self.skip_ws();
        match self.peek() {
            None => Ok(value),
            Some(c) => Err(self.unexpected(c, "the end of the header")),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, c: char, wanted: &str) -> String {
        format!(
            "unexpected {c:?} at character {}, expected {wanted}",
            self.pos
        )
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err("the header ends where a value was expected".to_string());
        };
        match c {
            '{' | '(' | '[' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                self.pos += 1;
                let value = match c {
                    '{' => self.dict()?,
                    '(' => Value::Tuple(self.sequence(')')?),
                    _ => Value::List(self.sequence(']')?),
                };
                self.depth -= 1;
                Ok(value)
            }
            '\'' | '"' => self.string(c),
            '0'..='9' => self.int(),
            c if c.is_ascii_alphabetic() => self.name(),
            c => Err(self.unexpected(c, "a value")),
        }
    }

    /// Items up to `close` (the opening bracket already consumed).
    fn sequence(&mut self, close: char) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(c) => return Err(self.unexpected(c, &format!("',' or '{close}'"))),
                None => return Err(format!("the header ends before the closing '{close}'")),
            }
        }
    }

    /// Entries up to `}` (the `{` already consumed).
    fn dict(&mut self) -> Result<Value, String> {
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(Value::Dict(entries));
            }
            let key = self.value()?;
            self.skip_ws();
            match self.peek() {
                Some(':') => self.pos += 1,
                Some(c) => return Err(self.unexpected(c, "':'")),
                None => return Err("the header ends before the closing '}'".to_string()),
            }
            let value = self.value()?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                Some(c) => return Err(self.unexpected(c, "',' or '}'")),
                None => return Err("the header ends before the closing '}'".to_string()),
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<Value, String> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("string opened at character {start} is not closed")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(Value::Str(s));
                }
                Some('\\') => {
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(format!("string opened at character {start} is not closed"));
                    };
                    s.push(c);
                    self.pos += 1;
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let mut n: usize = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(d as usize))
                .ok_or_else(|| format!("the integer at character {start} is too large"))?;
            self.pos += 1;
        }
        // Python 2 wrote long integers with an `L` suffix (`(10L, 28L)`).
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        Ok(Value::Int(n))
    }

    fn name(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        match name.as_str() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::None),
            _ => Err(format!(
                "unknown name '{name}' at character {start}, expected True, False or None"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_written_headers() {
        let h =
            parse_header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), }    \n")
                .unwrap();
        assert_eq!(h.dtype, Dtype::U8);
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![2, 3, 4]);
    }

    #[test]
    fn tolerates_odd_spacing_quotes_and_trailing_commas() {
        let h = parse_header(
            "{ \"shape\" :(5 ,)  ,'fortran_order':True,\n\t'descr':'<f8' , 'extra': [1, (2,), None],}",
        )
        .unwrap();
        assert_eq!(h.shape, vec![5]);
        assert!(h.fortran_order);
        assert_eq!(h.dtype, Dtype::F64);
        let h = parse_header("{'descr':'<f4','fortran_order':False,'shape':()}").unwrap();
        assert_eq!(h.shape, Vec::<usize>::new());
        let h =
            parse_header("{'descr': 'u1', 'fortran_order': False, 'shape': (10L, 3L)}").unwrap();
        assert_eq!(h.shape, vec![10, 3]);
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let cases = [
            ("", "ends where a value was expected"),
            (
                "{'descr': '|u1', 'fortran_order': False",
                "ends before the closing '}'",
            ),
            ("{'descr' '|u1'}", "expected ':'"),
            ("{'descr': '|u1, 'shape': ()}", "expected ',' or '}'"),
            (
                "{'descr': 'u1', 'fortran_order': Maybe, 'shape': ()}",
                "unknown name 'Maybe'",
            ),
            ("['descr']", "not a dict"),
            ("{'fortran_order': False, 'shape': ()}", "no 'descr' key"),
            ("{'descr': 'u1', 'shape': ()}", "no 'fortran_order' key"),
            ("{'descr': 'u1', 'fortran_order': False}", "no 'shape' key"),
            (
                "{'descr': 'u1', 'fortran_order': 0, 'shape': ()}",
                "True or False",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': ('a',)}",
                "integers",
            ),
            (
                "{'descr': 'u1', 'descr': 'u1', 'fortran_order': False, 'shape': ()}",
                "twice",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': (-1,)}",
                "unexpected '-'",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
                "too large",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': ()} x",
                "end of the header",
            ),
            (&"(".repeat(100), "nested deeper"),
        ];
        for (header, want) in cases {
            let err = parse_header(header).unwrap_err();
            assert!(
                err.contains(want),
                "{header:?}: {err} should mention {want}"
            );
        }
    }

    #[test]
    fn dtypes_are_mapped_or_refused_with_a_hint() {
        for d in ["|u1", "u1", "<u1"] {
            assert_eq!(parse_dtype(d), Ok(Dtype::U8));
        }
        assert_eq!(parse_dtype("<f4"), Ok(Dtype::F32));
        assert_eq!(parse_dtype("<f8"), Ok(Dtype::F64));
        let cases = [
            (">f4", "big-endian"),
            (">f8", "big-endian"),
            ("<i8", "astype(np.uint8)"),
            ("<f2", "astype"),
            ("|b1", "astype"),
            ("|O", "object arrays"),
        ];
        for (d, hint) in cases {
            let err = parse_dtype(d).unwrap_err();
            assert!(
                err.starts_with(&format!("dtype '{d}' is not supported; ")),
                "{err}"
            );
            assert!(err.contains(hint), "{err} should mention {hint}");
        }
        let err = parse_header(
            "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (3,)}",
        )
        .unwrap_err();
        assert!(
            err.contains("structured dtype [('a', '<f4'), ('b', '<i8')] is not supported"),
            "{err}"
        );
    }
}
