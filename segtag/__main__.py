from segtag.cli import main

raise SystemExit(main())
