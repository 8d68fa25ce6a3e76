//! Tables for the terminal (comfy-table), sized to fit: as wide as the terminal says it is,
//! `COLUMNS` when that is set, else 100 columns (a pipe, a file, a test), with long cells
//! wrapped so no line runs past the width.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

/// The width when neither the terminal nor `COLUMNS` says.
pub const DEFAULT_WIDTH: u16 = 100;

/// An empty table that wraps its cells to the output's width.
pub fn new() -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c > 0);
    match (columns, t.width()) {
        (Some(c), _) => {
            t.set_width(c);
        }
        (None, Some(_)) => {}
        (None, None) => {
            t.set_width(DEFAULT_WIDTH);
        }
    }
    t
}

/// Keeps the given columns (short values: numbers, times, modes) unwrapped, so the others
/// (names, places) are the ones that wrap.
pub fn keep_whole(t: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
        }
    }
}
