/* touchstream tracker: placeholder, replaced by the full tracker. */
