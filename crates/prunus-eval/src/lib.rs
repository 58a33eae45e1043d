//! prunus-eval (in progress)
