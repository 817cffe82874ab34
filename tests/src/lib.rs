//! placeholder: the harness is being written
