"""Results into pictures and files: overlays, boxed frames, figures and reports. The pipeline
(``forensics.analysis``) computes and writes nothing; everything drawn or written starts here."""
