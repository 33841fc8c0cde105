from sluice_local.cli import main

raise SystemExit(main())
