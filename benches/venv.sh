# Sourced by the bench scripts: the Python venv under target/ with the peers (implicit, Surprise)
# and matplotlib for the plots, created on first use.
VENV=target/bench-venv
if [ ! -x $VENV/bin/python ] || ! $VENV/bin/python -c "import implicit, surprise, matplotlib" 2>/dev/null; then
  python3 -m venv $VENV 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $VENV; }
  $VENV/bin/pip install -q "implicit==0.7.3" "scikit-surprise==1.1.5" numpy scipy matplotlib
fi
