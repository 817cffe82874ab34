//! Text trees in the style of `cargo tree`: `├── `, `└── ` and `│   ` prefixes, shared
//! by `explain`, `graph` and `explain --for`. Pure: a value in, text out.

/// One entry of a tree: a label (its first line beside the connector, further lines
/// indented under it) and the entries below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub label: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(label: impl Into<String>) -> Node {
        Node {
            label: label.into(),
            children: Vec::new(),
        }
    }

    pub fn with(label: impl Into<String>, children: Vec<Node>) -> Node {
        Node {
            label: label.into(),
            children,
        }
    }

    /// Adds a child and returns `self`, for building trees inline.
    pub fn child(mut self, child: Node) -> Node {
        self.children.push(child);
        self
    }
}

/// Renders each root at the left margin with its descendants below it.
pub fn render_forest(roots: &[Node]) -> String {
    let mut out = String::new();
    for root in roots {
        let mut lines = root.label.lines();
        out.push_str(lines.next().unwrap_or(""));
        out.push('\n');
        let more = if root.children.is_empty() {
            ""
        } else {
            "│   "
        };
        for line in lines {
            out.push_str(more);
            out.push_str(line);
            out.push('\n');
        }
        render_children(&mut out, "", &root.children);
    }
    out
}

fn render_children(out: &mut String, prefix: &str, children: &[Node]) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let mut lines = child.label.lines();
        out.push_str(prefix);
        out.push_str(if last { "└── " } else { "├── " });
        out.push_str(lines.next().unwrap_or(""));
        out.push('\n');
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        // Further lines of a label line up with its first; under a label with children
        // the stem continues on their left.
        let continuation = if child.children.is_empty() {
            child_prefix.clone()
        } else {
            format!("{child_prefix}│   ")
        };
        for line in lines {
            out.push_str(continuation.trim_end_matches(' '));
            if !line.is_empty() {
                out.push_str(&continuation[continuation.trim_end_matches(' ').len()..]);
                out.push_str(line);
            }
            out.push('\n');
        }
        render_children(out, &child_prefix, &child.children);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_tree_layout() {
        let tree = Node::new("tv_category")
            .child(
                Node::new("sources")
                    .child(Node::new("tb_category").child(Node::new("path a")))
                    .child(Node::new("tv_product\nsecond line")),
            )
            .child(Node::new("statements").child(Node::new("apply\nSELECT 1")));
        insta::assert_snapshot!(render_forest(&[tree, Node::new("other root")]), @r"
        tv_category
        ├── sources
        │   ├── tb_category
        │   │   └── path a
        │   └── tv_product
        │       second line
        └── statements
            └── apply
                SELECT 1
        other root
        ");
    }
}
