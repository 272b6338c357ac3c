//! Renderers: tables (comfy-table), JSON, and human text for `show`.
