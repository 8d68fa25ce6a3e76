//! The plan as written: serde types mirroring the TOML, every value wrapped in `Spanned` so a
//! problem can point at the exact line and column. Nothing is checked here beyond types and
//! unknown keys; `build` turns this into a validated `Plan`.
//!
//! Unknown keys are collected (with `serde_ignored`), not refused by serde: a refusal would stop
//! at the first one and hide every other problem, and `plan check` reports all in one run.

use super::Problem;
use serde::Deserialize;
use serde::de::Visitor;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub type Sp<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
pub struct RawPlan {
    pub event: Sp<RawEvent>,
    #[serde(default)]
    pub places: Vec<Sp<RawPlace>>,
    #[serde(default)]
    pub milestones: Vec<Sp<RawMilestone>>,
    #[serde(default)]
    pub relays: Vec<Sp<RawRelay>>,
    #[serde(default)]
    pub courses: Vec<Sp<RawCourse>>,
}

#[derive(Debug, Deserialize)]
pub struct RawEvent {
    pub id: Sp<String>,
    pub name: Sp<String>,
    /// Zone for times that belong to no place (date-only milestones without a place).
    pub timezone: Option<Sp<String>>,
    /// Spectators see positions this much later (e.g. "30s"); organisers see them live.
    pub public_delay: Option<Sp<String>>,
    /// A carrier who has not reported for this long is flagged silent (default 5m).
    pub silent_after: Option<Sp<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawPlace {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    pub at: Sp<Vec<Sp<f64>>>,
    pub timezone: Sp<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawMilestone {
    pub name: Sp<String>,
    pub date: Option<Sp<String>>,
    pub at: Option<Sp<String>>,
    pub place: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawRelay {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    pub object: Option<Sp<String>>,
    pub course: Option<Sp<String>>,
    pub start: Option<Sp<String>>,
    pub carriers: Option<Sp<Vec<Sp<String>>>>,
    pub legs: Option<Sp<Vec<Sp<RawLeg>>>>,
}

#[derive(Debug, Deserialize)]
pub struct RawCourse {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    #[serde(default)]
    pub legs: Vec<Sp<RawLeg>>,
}

#[derive(Debug, Deserialize)]
pub struct RawLeg {
    pub name: Option<Sp<String>>,
    pub carriers: Option<Sp<Vec<Sp<String>>>>,
    pub mode: Sp<String>,
    pub place: Option<Sp<String>>,
    pub route: Option<Sp<RawRoute>>,
    pub devices: Option<Sp<Vec<Sp<String>>>>,
    pub start: Option<Sp<String>>,
    pub duration: Option<Sp<String>>,
    pub end: Option<Sp<String>>,
    pub exchange_radius_m: Option<Sp<f64>>,
    pub note: Option<Sp<String>>,
}

/// Exactly one of the three forms: `file`, `points`, or `from` + `to`.
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub file: Option<Sp<String>>,
    pub points: Option<Sp<Vec<Sp<Vec<f64>>>>>,
    pub from: Option<Sp<String>>,
    pub to: Option<Sp<String>>,
}

/// Reads the plan's TOML into [`RawPlan`]. A TOML or type error is the one problem returned as
/// `Err`; unknown keys come back beside the plan, each at its key, so the rest is still checked.
pub fn read(src: &str) -> Result<(RawPlan, Vec<Problem>), Problem> {
    let toml_err = |e: toml::de::Error| Problem::new(e.span(), "", e.message().trim());
    let de = toml::Deserializer::parse(src).map_err(toml_err)?;
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let raw: RawPlan = serde_ignored::deserialize(de, |path| {
        let mut segs = Vec::new();
        segments(&path, &mut segs);
        unknown.push(segs);
    })
    .map_err(toml_err)?;
    let problems = if unknown.is_empty() {
        Vec::new()
    } else {
        let doc = DeTable::parse(src).map_err(toml_err)?;
        unknown
            .iter()
            .map(|segs| unknown_key(doc.get_ref(), segs))
            .collect()
    };
    Ok((raw, problems))
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path as keys and indices, without the wrappers `Spanned` adds.
fn segments(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            segments(parent, out);
            out.push(Segment::Index(*index));
        }
        Path::Map { parent, key } => {
            segments(parent, out);
            if !key.starts_with("$__serde_spanned_private_") {
                out.push(Segment::Key(key.clone()));
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            segments(parent, out);
        }
    }
}

/// The problem for an unknown key: at the key, naming the keys its table takes.
fn unknown_key(doc: &DeTable<'_>, path: &[Segment]) -> Problem {
    let Some((Segment::Key(key), parents)) = path.split_last() else {
        return Problem::new(None, "", "unknown key");
    };
    let field = path
        .iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".");
    let expected = match keys_of_table(parents) {
        [] => String::new(),
        keys => format!(
            ", expected one of {}",
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Problem::new(
        key_span(doc, parents, key),
        field,
        format!("unknown field `{key}`{expected}"),
    )
}

/// Which table a path leads to, as the keys its type takes.
fn keys_of_table(parents: &[Segment]) -> &'static [&'static str] {
    let shape: Vec<Option<&str>> = parents
        .iter()
        .map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match shape.as_slice() {
        [] => keys_of::<RawPlan>(),
        [Some("event")] => keys_of::<RawEvent>(),
        [Some("places"), None] => keys_of::<RawPlace>(),
        [Some("milestones"), None] => keys_of::<RawMilestone>(),
        [Some("relays"), None] => keys_of::<RawRelay>(),
        [Some("courses"), None] => keys_of::<RawCourse>(),
        [Some("relays" | "courses"), None, Some("legs"), None] => keys_of::<RawLeg>(),
        [
            Some("relays" | "courses"),
            None,
            Some("legs"),
            None,
            Some("route"),
        ] => keys_of::<RawRoute>(),
        _ => &[],
    }
}

/// Where `key` is written in the table that `parents` leads to.
fn key_span(doc: &DeTable<'_>, parents: &[Segment], key: &str) -> Option<std::ops::Range<usize>> {
    let mut table = doc;
    let mut rest = parents.iter().peekable();
    while let Some(seg) = rest.next() {
        let Segment::Key(k) = seg else { return None };
        let mut value = table.get(k.as_str())?.get_ref();
        while let (DeValue::Array(items), Some(Segment::Index(i))) = (value, rest.peek()) {
            value = items.get(*i)?.get_ref();
            rest.next();
        }
        let DeValue::Table(t) = value else {
            return None;
        };
        table = t;
    }
    table.get_key_value(key).map(|(k, _)| k.span())
}

/// The keys a table of type `T` takes, as serde's derive lists them: asked of `T` itself, so
/// no list here can drift from the struct.
fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only structs are probed"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_of_a_table_come_from_its_type() {
        assert_eq!(
            keys_of::<RawRoute>(),
            &["file", "points", "from", "to"],
            "RawRoute's fields"
        );
        assert!(keys_of::<RawLeg>().contains(&"exchange_radius_m"));
    }

    #[test]
    fn every_unknown_key_is_found_at_its_key_and_the_plan_still_read() {
        let src = "colour = 1\n[event]\nid = \"e\"\nname = \"E\"\nnmae = \"x\"\n\
                   [[relays]]\nid = \"r\"\n[[relays.legs]]\nmode = \"run\"\n\
                   route = { points = [[0, 0], [0, 1]], shape = \"x\" }\nspeed = 3\n";
        let (raw, problems) = read(src).expect("reads");
        assert_eq!(raw.event.get_ref().id.get_ref(), "e");
        let found: Vec<(String, &str)> = problems
            .iter()
            .map(|p| {
                let span = p.span.clone().expect("a span");
                (p.message.clone(), &src[span])
            })
            .collect();
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0]
                .0
                .starts_with("unknown field `colour`, expected one of `event`")
        );
        assert_eq!(found[0].1, "colour");
        assert!(
            found[1]
                .0
                .starts_with("unknown field `nmae`, expected one of `id`, `name`")
        );
        assert_eq!(found[1].1, "nmae");
        assert!(
            found[2]
                .0
                .starts_with("unknown field `shape`, expected one of `file`")
        );
        assert_eq!(found[2].1, "shape");
        assert!(found[3].0.contains("`speed`") && found[3].0.contains("`duration`"));
        assert_eq!(found[3].1, "speed");
    }
}
